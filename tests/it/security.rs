//! mTLS by default: every request needs a certificate of the cluster CA with the right role;
//! anonymous data-plane access only when the server is told to allow it.

use std::time::Duration;

use quiver_client::{Admin, Client, ClientOptions, ErrorCode, Message, Producer, PullConsumer};
use quiver_net::tls::{CertPlan, init_dir};
use quiver_tests::harness::{Server, Spec, serial};

use crate::setup;

fn anonymous(server: &Server) -> Client {
    let mut options = ClientOptions::new(server.addr.clone(), server.tls_dir().join("ca.pem"));
    options.identity = None;
    options.timeout = Duration::from_secs(3);
    Client::new(options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_needs_a_certificate_of_the_cluster_ca() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "secure", 1).await;
    let stored = || async {
        PullConsumer::new(s.client.clone())
            .offsets("secure")
            .await
            .unwrap()[0]
            .max_offset
    };

    // No certificate: refused, with the fix.
    let nobody = anonymous(&s.server);
    let err = Producer::new(nobody.clone())
        .send("secure", Message::new("anonymous"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    assert!(err.to_string().contains("client certificate"), "{err}");
    let err = Admin::new(nobody.clone()).list_topics().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    assert_eq!(stored().await, 0);

    // The standalone's client pair (found beside the CA): data plane yes, admin no.
    let app = s.server.client(false);
    let sent = Producer::new(app.clone())
        .send("secure", Message::new("with a client certificate"))
        .await
        .unwrap();
    let pulled = PullConsumer::new(app.clone())
        .pull(&sent.queue, 0, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        pulled.messages[0].body,
        "with a client certificate".as_bytes()
    );
    let err = Admin::new(app).create_topic("t2", 1).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");

    // A certificate of a foreign CA is refused, even with the client or admin role.
    let foreign = s.dir.path().join("foreign");
    init_dir(
        &foreign,
        &CertPlan {
            nodes: vec![],
            clients: vec![("client".into(), false), ("admin".into(), true)],
        },
    )
    .unwrap();
    for name in ["client", "admin"] {
        let mut options =
            ClientOptions::new(s.server.addr.clone(), s.server.tls_dir().join("ca.pem"));
        options.identity = Some((
            foreign.join(format!("{name}.pem")),
            foreign.join(format!("{name}.key")),
        ));
        options.timeout = Duration::from_secs(3);
        let impostor = Client::new(options).unwrap();
        let result = Producer::new(impostor)
            .send("secure", Message::new("foreign"))
            .await;
        assert!(result.is_err(), "a foreign {name} certificate is refused");
    }
    assert_eq!(stored().await, 1, "only the client's send is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_access_is_explicit_and_logged() {
    let _serial = serial();
    let s = setup(Spec::standalone(&["--allow-anonymous"]), "open", 1).await;
    let nobody = anonymous(&s.server);
    let sent = Producer::new(nobody.clone())
        .send("open", Message::new("anonymous"))
        .await
        .unwrap();
    assert_eq!(sent.offset, 0);
    // Admin requests still need the admin role.
    let err = Admin::new(nobody).create_topic("t2", 1).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    let log = s.server.log_tail();
    assert!(
        log.contains("allow_anonymous = true") && log.contains("WARN"),
        "{log}"
    );
}
