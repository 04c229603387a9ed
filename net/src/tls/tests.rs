use super::*;

#[test]
fn init_dir_makes_a_ca_nodes_and_clients_with_roles() {
    let dir = tempfile::tempdir().unwrap();
    let plan = CertPlan {
        nodes: vec![("broker-a".into(), vec![])],
        clients: vec![("admin".into(), true), ("app".into(), false)],
    };
    let written = init_dir(dir.path(), &plan).unwrap();
    assert_eq!(written.len(), 8);
    let node = load_certs(&dir.path().join("broker-a.pem")).unwrap();
    assert_eq!(
        identity_of(&node),
        Some(Identity {
            name: "broker-a".into(),
            role: Role::Node
        })
    );
    let admin = load_certs(&dir.path().join("admin.pem")).unwrap();
    assert_eq!(identity_of(&admin).unwrap().role, Role::Admin);
    let app = load_certs(&dir.path().join("app.pem")).unwrap();
    assert_eq!(identity_of(&app).unwrap().role, Role::Client);
    // Configs build from the files.
    ServerTls::in_dir(dir.path(), "broker-a")
        .rustls_config()
        .unwrap();
    let client = ClientTls {
        ca: dir.path().join("ca.pem"),
        identity: Some((dir.path().join("admin.pem"), dir.path().join("admin.key"))),
    };
    client.rustls_config().unwrap();
    // A second run reuses the CA: a new client chains to the same root.
    let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();
    init_dir(
        dir.path(),
        &CertPlan {
            nodes: vec![],
            clients: vec![("ops".into(), true)],
        },
    )
    .unwrap();
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
}

#[test]
fn locate_ca_lists_the_paths_it_tried() {
    let err = locate_ca(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    assert!(err.contains("QUIVER_CA"), "{err}");
}
