//! A `quiver consume` process for end-to-end group tests: what it printed, by message id.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use quiver_tests::harness::bin;

/// A `quiver consume` process and what it printed: `(msg id)` per line.
pub struct Member {
    pub child: Child,
    /// Its member id, once it printed it.
    pub id: Arc<Mutex<Option<String>>>,
    /// Message ids it printed, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// `(broker, queue, offset)` of each message it printed, in order.
    pub positions: Arc<Mutex<Vec<(String, u64, u64)>>>,
    /// Its error lines.
    pub errors: Arc<Mutex<Vec<String>>>,
}

impl Member {
    /// A clustering member of `group` reading `topic` from the first message, heartbeating
    /// every 100 ms and committing after every batch it prints.
    pub fn start(tls: &Path, namesrv: &str, group: &str, topic: &str, batch: u32) -> Self {
        let batch = batch.to_string();
        Self::start_with(
            tls,
            namesrv,
            &[
                "--group",
                group,
                "--topic",
                topic,
                "--from",
                "first",
                "--heartbeat",
                "100ms",
                "--commit-interval",
                "0s",
                "--batch",
                &batch,
            ],
        )
    }

    /// `quiver consume` with `args`.
    pub fn start_with(tls: &Path, namesrv: &str, args: &[&str]) -> Self {
        let mut child = Command::new(bin("quiver"))
            .arg("--ca")
            .arg(tls.join("ca.pem"))
            .arg("--cert")
            .arg(tls.join("client.pem"))
            .arg("--key")
            .arg(tls.join("client.key"))
            .args(["--namesrv", namesrv, "--output", "json", "consume"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("quiver consume starts");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let id = Arc::new(Mutex::new(None));
        let stdout = child.stdout.take().unwrap();
        let sink = seen.clone();
        let positions = Arc::new(Mutex::new(Vec::new()));
        let positions_sink = positions.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
                sink.lock()
                    .unwrap()
                    .push(value["msg_id"].as_str().unwrap().to_owned());
                positions_sink.lock().unwrap().push((
                    value["broker"].as_str().unwrap_or_default().to_owned(),
                    value["queue_id"].as_u64().unwrap(),
                    value["offset"].as_u64().unwrap(),
                ));
            }
        });
        let stderr = child.stderr.take().unwrap();
        let member = id.clone();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let error_sink = errors.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("(member ").nth(1) {
                    *member.lock().unwrap() = rest.split(')').next().map(str::to_owned);
                } else {
                    eprintln!("consumer: {line}");
                    error_sink.lock().unwrap().push(line);
                }
            }
        });
        Member {
            child,
            id,
            seen,
            positions,
            errors,
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    pub fn handled(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
