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

/// The standalone is a name server and a broker on one endpoint: the broker registers with
/// its own name server, so `cluster list` is the registry's view (the topic table's version
/// moves with each change) and a route asked right after a change already has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_registers_with_its_own_name_server() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&Spec::standalone(&[]), &dir.path().join("data")).unwrap();
    let client = server.client(true);
    let admin = Admin::new(client.clone());
    let before = admin.cluster().await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].broker_name, "standalone");
    assert_eq!(before[0].addr, server.addr);
    assert_eq!((before[0].topics, before[0].data_version.counter), (0, 0));
    for (n, topic) in ["a", "b", "c"].iter().enumerate() {
        admin.create_topic(topic, 3).await.unwrap();
        // No wait: the change returned once the name server had it.
        let route = client.route(topic).await.unwrap();
        assert_eq!(route.queues[0].queues, 3, "route of {topic}");
        let listed = admin.cluster().await.unwrap();
        assert_eq!(listed[0].topics, n as u32 + 1);
        assert_eq!(listed[0].data_version.counter, n as u64 + 1);
    }
    admin.delete_topic("b").await.unwrap();
    let err = server.client(false).route("b").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicNotFound), "{err}");
}
