use std::panic::{AssertUnwindSafe, catch_unwind};

use super::*;

/// A `Server` around `sh -c script`, its stderr copied to a log as a real server's is.
fn fake_server(script: &str, dir: &Path) -> Server {
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh starts");
    let stdin = child.stdin.take();
    let pid = child.id();
    let log = dir.join(format!("fake-{pid}.log"));
    let (_ready, log_drained) = tee_stderr(&mut child, &log, pid).expect("log opens");
    Server {
        child: Some(child),
        stdin,
        log_drained: Some(log_drained),
        sent_signals: Mutex::default(),
        crash: None,
        data_dir: dir.to_owned(),
        addr: String::new(),
        log,
        program: "sh".into(),
        args: Vec::new(),
        envs: Vec::new(),
    }
}

/// Takes back a verdict a test has checked, so the server's `Drop` passes.
fn forgive(server: &mut Server) {
    server.crash = None;
    std::fs::write(&server.log, "").unwrap();
}

/// Waits for the fake process to end on its own (its script exits).
fn wait_exit(server: &mut Server) {
    server
        .child
        .as_mut()
        .expect("running")
        .wait()
        .expect("wait");
}

const PANIC_LINES: &str = "thread 'tokio-runtime-worker' (4242) panicked at broker/src/store/writer.rs:10:5:\\nindex out of bounds";

#[test]
fn panic_messages_are_found_in_a_log() {
    let old = "INFO start\nthread 'main' panicked at src/main.rs:1:2:\nboom\nnote: run with RUST_BACKTRACE=1\n";
    assert_eq!(
        panic_report(old).as_deref(),
        Some("thread 'main' panicked at src/main.rs:1:2: boom")
    );
    let new = "thread '<unnamed>' (77) panicked at a.rs:3:4:\nno message";
    assert!(panic_report(new).unwrap().contains("no message"));
    for clean in [
        "",
        "quiver: listening quic=127.0.0.1:1 pid=2\nINFO topic created",
        "WARN request failed cause=\"peer said: thread 'x' panicked at y\"",
    ] {
        assert_eq!(panic_report(clean), None, "{clean:?}");
    }
}

#[test]
fn a_panic_in_the_log_fails_the_stop_even_after_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("printf \"{PANIC_LINES}\\n\" >&2; exec cat");
    let mut server = fake_server(&script, dir.path());
    // The panic must be in the log before the kill (else the kill can beat the printf).
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    while !std::fs::read_to_string(&server.log).is_ok_and(|log| log.contains("panicked")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the fake server never wrote"
        );
        std::thread::yield_now();
    }
    server.kill9_unchecked();
    let err = server.check_no_panic().unwrap_err().to_string();
    assert!(
        err.contains("panicked at broker/src/store/writer.rs:10:5: index out of bounds"),
        "{err}"
    );
    let kill9 = catch_unwind(AssertUnwindSafe(|| server.kill9()));
    assert!(
        kill9.is_err(),
        "kill9 of a server that panicked must fail the test"
    );
    forgive(&mut server);
}

#[test]
fn drop_fails_the_test_when_the_server_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("printf \"{PANIC_LINES}\\n\" >&2; exit 101");
    let mut server = fake_server(&script, dir.path());
    wait_exit(&mut server);
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(server)));
    assert!(
        dropped.is_err(),
        "dropping a server that panicked must fail the test"
    );
}

#[test]
fn exit_code_101_or_a_crash_signal_fails_without_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = fake_server("exit 101", dir.path());
    wait_exit(&mut server);
    server.kill9_unchecked();
    assert!(
        server
            .check_no_panic()
            .unwrap_err()
            .to_string()
            .contains("code 101")
    );
    forgive(&mut server);
    let mut server = fake_server("kill -SEGV $$", dir.path());
    wait_exit(&mut server);
    server.kill9_unchecked();
    assert!(
        server
            .check_no_panic()
            .unwrap_err()
            .to_string()
            .contains("signal 11")
    );
    forgive(&mut server);
}

#[test]
fn kill9_and_signals_the_test_sent_are_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = fake_server("echo 'INFO serving' >&2; exec cat", dir.path());
    server.kill9();
    server.check_no_panic().unwrap();
    let mut server = fake_server("exec cat", dir.path());
    let status = server.signal_and_wait(libc::SIGABRT).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT));
    let mut server = fake_server("exit 0", dir.path());
    wait_exit(&mut server);
    drop(server);
}
