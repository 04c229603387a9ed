//! The `quiver` command: round trip, JSON output, and clear errors.

use std::process::Command;

use quiver_tests::harness::{Server, Spec, bin, serial};

pub(crate) fn quiver(server: &Server, args: &[&str]) -> std::process::Output {
    let tls = server.tls_dir();
    Command::new(bin("quiver"))
        .arg("--ca")
        .arg(tls.join("ca.pem"))
        .arg("--cert")
        .arg(tls.join("admin.pem"))
        .arg("--key")
        .arg(tls.join("admin.key"))
        .args(["--namesrv", &server.addr])
        .args(args)
        .output()
        .expect("quiver runs")
}

#[test]
fn cli_creates_sends_pulls_and_queries() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&Spec::standalone(&[]), &dir.path().join("data")).unwrap();
    let out = quiver(&server, &["topic", "create", "cli", "--queues", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = quiver(
        &server,
        &[
            "send",
            "--topic",
            "cli",
            "--body",
            "hello quiver",
            "--key",
            "k1",
            "--tag",
            "greet",
            "--output",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let queue = sent["queue_id"].as_u64().unwrap().to_string();
    let out = quiver(
        &server,
        &[
            "pull", "--topic", "cli", "--queue", &queue, "--offset", "0", "--output", "json",
        ],
    );
    assert!(out.status.success());
    let first: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["body"], "hello quiver");
    assert_eq!(first["msg_id"], sent["msg_id"]);
    let out = quiver(
        &server,
        &["query", "--topic", "cli", "--key", "k1", "--output", "json"],
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found["tag"], "greet");
    let out = quiver(
        &server,
        &[
            "query",
            "--topic",
            "cli",
            "--id",
            sent["msg_id"].as_str().unwrap(),
            "--output",
            "json",
        ],
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found["keys"][0], "k1");
    // Without a client certificate (a CA with no pair beside it), a request says where the
    // CLI looked for one.
    let lone_ca = dir.path().join("lone-ca.pem");
    std::fs::copy(server.tls_dir().join("ca.pem"), &lone_ca).unwrap();
    let out = Command::new(bin("quiver"))
        .current_dir(dir.path())
        .env_remove("QUIVER_CERT")
        .env_remove("QUIVER_KEY")
        .arg("--ca")
        .arg(&lone_ca)
        .args(["--namesrv", &server.addr, "topic", "create", "denied"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission_denied") && err.contains("QUIVER_CERT"),
        "{err}"
    );
    // Errors: one line, non-zero exit, says how to fix.
    let out = quiver(&server, &["send", "--topic", "nope", "--body", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("topic nope not found") && err.contains("quiver topic create nope"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn cli_says_where_it_looked_when_no_broker_runs() {
    let dir = tempfile::tempdir().unwrap();
    // A CA that exists, and an address where nothing listens (a UDP port we hold).
    quiver_net::tls::init_dir(dir.path(), &quiver_net::tls::CertPlan::default()).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let out = Command::new(bin("quiver"))
        .arg("--ca")
        .arg(dir.path().join("ca.pem"))
        .args(["--namesrv", &addr, "topic", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&addr) && err.contains("quiver standalone"),
        "{err}"
    );
    // No CA anywhere: the error lists the paths tried.
    let out = Command::new(bin("quiver"))
        .current_dir(dir.path())
        .env_remove("QUIVER_CA")
        .args(["--ca", "/nonexistent/ca.pem", "topic", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/ca.pem") && err.contains("QUIVER_CA"),
        "{err}"
    );
}

/// Flag values the program could not use are refused by name, with what is allowed, and a
/// non-zero exit: never a panic (`--timeout 1e30` overflowed a Duration).
#[test]
fn cli_refuses_unusable_flag_values_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "").unwrap();
    for (args, expect) in [
        (
            &["--timeout", "1e30", "stats"][..],
            "between 0.001 and 86400 seconds",
        ),
        (
            &["--timeout", "0", "stats"],
            "between 0.001 and 86400 seconds",
        ),
        (
            &["pull", "--topic", "t", "--queue", "0", "--wait-ms", "60001"],
            "60001",
        ),
        (&["bench", "w2", "--connections", "0"], "at least 1"),
        (
            &["send", "--topic", "t", "--size", "99999999999"],
            "more than a request can carry",
        ),
    ] {
        let out = Command::new(bin("quiver"))
            .arg("--ca")
            .arg(&ca)
            .args(args)
            .output()
            .expect("quiver runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.status.code() != Some(101),
            "{args:?}: {:?} {stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

/// A guest the host's tests use (built by `cargo xtask`).
fn guest(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-guests/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{}: build the guests with `cargo xtask guests`",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

fn local(args: &[&str]) -> std::process::Output {
    Command::new(bin("quiver"))
        .args(args)
        .output()
        .expect("quiver runs")
}

#[test]
fn quiver_fn_test_runs_a_function_locally_and_says_why_one_fails() {
    let router = guest("router");
    let out = local(&[
        "--output",
        "json",
        "fn",
        "test",
        &router,
        "--message",
        r#"{"tag": "paid", "body_json": {"order": 7}, "keys": ["o-7"]}"#,
        "--config",
        "to=shipments",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcomes"][0]["outcome"], "ack", "{report}");
    assert_eq!(report["emits"][0]["topic"], "shipments", "{report}");
    assert_eq!(report["emits"][0]["body"], r#"{"order":7}"#, "{report}");
    assert_eq!(report["emits"][0]["keys"][0], "o-7", "{report}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.jsonl");
    std::fs::write(&file, "{\"body\": \"fine\"}\n{\"body\": \"boom\"}\n").unwrap();
    let out = local(&[
        "fn",
        "test",
        &guest("misbehave"),
        "--messages",
        &file.to_string_lossy(),
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("boom at offset 1"),
        "the panic is in the log: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the function failed: the function panicked"),
        "{stderr}"
    );

    let out = local(&["fn", "test", &router, "--message", r#"{"bdy": 1}"#]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `bdy`"), "{stderr}");
}

#[test]
fn quiver_fn_new_makes_a_crate_that_builds_outside_the_repo_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().to_string_lossy().into_owned();
    let out = local(&["fn", "new", "hello-fn", "--dir", &dir_text]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dir.path().join("hello-fn");
    assert!(root.join("quiver-sdk/wit/quiver.wit").exists());
    let out = local(&["fn", "new", "hello-fn", "--dir", &dir_text]);
    assert!(
        !out.status.success(),
        "a second new over the first is refused"
    );
    let out = local(&["fn", "new", "Bad Name", "--dir", &dir_text]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("lowercase"));

    let out = local(&["--output", "json", "fn", "build", &root.to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wasm = built["component"].as_str().unwrap().to_owned();
    assert!(wasm.ends_with("hello_fn.wasm"), "{wasm}");
    let out = local(&[
        "--output",
        "json",
        "fn",
        "test",
        &wasm,
        "--message",
        r#"{"body": "hi"}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcomes"][0]["outcome"], "ack", "{report}");

    // Deploy the scaffold to a standalone, send, and watch it work.
    let _serial = serial();
    let server = Server::start(&Spec::standalone(&[]), &dir.path().join("data")).unwrap();
    let ok = |args: &[&str]| {
        let out = quiver(&server, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["topic", "create", "greetings", "--queues", "1"]);
    let deploy = [
        "fn",
        "deploy",
        &wasm,
        "--name",
        "hello",
        "--topic",
        "greetings",
        "--from",
        "first",
    ];
    assert!(ok(&deploy).contains("version 1 deployed (compiled)"));
    ok(&["send", "--topic", "greetings", "--body", "hi"]);
    ok(&["send", "--topic", "greetings", "--body", "there"]);
    let started = std::time::Instant::now();
    let described = loop {
        let text = ok(&["--output", "json", "fn", "describe", "hello"]);
        let described: serde_json::Value = serde_json::from_str(&text).unwrap();
        if described["counters"]["handled"] == 2 && described["lag"] == 0 {
            break described;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "not handled: {described}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(described["counters"]["acked"], 2, "{described}");
    assert_eq!(described["state"], "running");
    assert!(ok(&["fn", "list"]).contains("hello"));
    // Deploying the same component again reuses its compiled code; rollback returns to v1.
    assert!(ok(&deploy).contains("version 2 deployed (compiled code reused)"));
    assert!(ok(&["fn", "rollback", "hello"]).contains("rolled back to version 1"));
    let text = ok(&["--output", "json", "fn", "describe", "hello"]);
    let described: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(described["version"], 1);
    assert_eq!(described["previous"]["version"], 2);
    assert_eq!(described["counters"]["compiles"], 1);
    ok(&["fn", "logs", "hello"]);
    assert!(ok(&["fn", "undeploy", "hello"]).contains("undeployed"));
    let out = quiver(&server, &["fn", "describe", "hello"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fn.not_found"));
}
