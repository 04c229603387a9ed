//! Admin requests need the admin role.

use quiver_client::{Admin, Client, ClientOptions, ErrorCode};
use quiver_net::tls::{CertPlan, init_dir};
use quiver_tests::harness::{Server, Spec, serial};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_creation_needs_an_admin_certificate() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&Spec::standalone(&[]), &dir.path().join("data")).unwrap();
    let tls = server.tls_dir();
    // A client certificate without the admin role, signed by the same CA.
    init_dir(
        &tls,
        &CertPlan {
            nodes: vec![],
            clients: vec![("app".into(), false)],
        },
    )
    .unwrap();
    let mut options = ClientOptions::new(server.addr.clone(), tls.join("ca.pem"));
    options.identity = Some((tls.join("app.pem"), tls.join("app.key")));
    let app = Client::new(options).unwrap();
    let err = Admin::new(app.clone())
        .create_topic("t", 4)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    assert!(err.to_string().contains("admin"), "{err}");
    // Reads are open to client certificates.
    assert!(Admin::new(app).list_topics().await.unwrap().is_empty());
    let admin = Admin::new(server.client(true));
    let created = admin.create_topic("t", 4).await.unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].description.info.queues, 4);
    assert_eq!(admin.list_topics().await.unwrap()[0].topic, "t");
}
