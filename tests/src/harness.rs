//! A server process under test.
//!
//! The server runs with `QUIVER_EXIT_ON_STDIN_EOF=1` and a piped stdin, so it shuts down when
//! the test process dies; `Drop` kills it. Its stderr goes to `<dir>/server.log`, which is
//! printed when a test fails. Start-up is awaited on the server's own `listening` line, not
//! on a timer.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use quiver_client::{Client, ClientOptions};

/// How long a server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

static SERIAL: Mutex<()> = Mutex::new(());

/// Held by a test while it runs its processes.
///
/// Each test has its own runtime on its own thread, so holding this across `.await` blocks
/// only other tests' threads, which is the point.
pub struct SerialGuard {
    _guard: MutexGuard<'static, ()>,
}

/// Whether this is a campaign run (`QUIVER_CAMPAIGN=1`): fault tests then use RELIABILITY.md's
/// long settings (e.g. a 60 s name server outage) instead of the short CI ones.
pub fn campaign() -> bool {
    std::env::var("QUIVER_CAMPAIGN").is_ok_and(|v| v == "1")
}

/// Runs end-to-end tests one at a time (2-core CI machines; at most one cluster at once).
pub fn serial() -> SerialGuard {
    SerialGuard {
        _guard: SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    }
}

/// Where the `quiver` binaries are: `QUIVER_BIN_DIR`, else the target dir of this test.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("QUIVER_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The path of a binary, with a message on how to build it when missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` first (or set QUIVER_BIN_DIR)",
        path.display()
    );
    path
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// Data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// Bound QUIC address.
    pub addr: String,
    log: PathBuf,
    program: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Binary name.
    pub program: String,
    /// Arguments after the binary (without `--listen` / `--data-dir`).
    pub args: Vec<String>,
    /// Extra environment.
    pub envs: Vec<(String, String)>,
}

impl Spec {
    /// `quiver standalone` with extra flags.
    pub fn standalone(extra: &[&str]) -> Self {
        let mut args = vec!["standalone".to_owned()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Spec {
            program: "quiver".into(),
            args,
            envs: Vec::new(),
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }
}

impl Server {
    /// Starts `spec` with its data in `data_dir`, on a free loopback port.
    pub fn start(spec: &Spec, data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_on(spec, data_dir, "127.0.0.1:0")
    }

    /// Starts `spec` listening on `listen`.
    pub fn start_on(spec: &Spec, data_dir: &Path, listen: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.with_extension("log");
        let mut command = Command::new(bin(&spec.program));
        command
            .args(&spec.args)
            .args(["--listen", listen, "--data-dir"])
            .arg(data_dir)
            .env("QUIVER_EXIT_ON_STDIN_EOF", "1")
            .env(
                "QUIVER_LOG",
                std::env::var("QUIVER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(spec.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", spec.program))?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().expect("piped stderr");
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let pid = child.id();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_file, "{line}");
                if let Some(addr) = listening_addr(&line, pid)
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            stdin,
            data_dir: data_dir.to_owned(),
            addr: String::new(),
            log,
            program: spec.program.clone(),
            args: spec.args.clone(),
            envs: spec.envs.clone(),
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => server.addr = addr,
            Err(_) => {
                let status = server
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                bail!(
                    "{} did not start listening (exit: {status:?}); log:\n{}",
                    spec.program,
                    server.log_tail()
                );
            }
        }
        let ports = std::fs::read_to_string(data_dir.join("ports.json"))?;
        let ports: serde_json::Value = serde_json::from_str(&ports)?;
        if ports["pid"].as_u64() != Some(u64::from(pid))
            || ports["quic"].as_str() != Some(server.addr.as_str())
        {
            bail!(
                "ports.json {ports} does not match pid {pid} / {}",
                server.addr
            );
        }
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stdin = None;
    }

    /// Sends a signal (e.g. `libc::SIGSTOP`) without waiting.
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let child = self.child.as_ref().ok_or_else(|| anyhow!("not running"))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", child.id());
        }
        Ok(())
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) and waits for the exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> anyhow::Result<ExitStatus> {
        self.signal(signal)?;
        let child = self.child.as_mut().ok_or_else(|| anyhow!("not running"))?;
        let status = child.wait()?;
        self.child = None;
        self.stdin = None;
        Ok(status)
    }

    /// Starts the same program again on the same address and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let spec = Spec {
            program: self.program.clone(),
            args: self.args.clone(),
            envs: self.envs.clone(),
        };
        let next = Server::start_on(&spec, &self.data_dir.clone(), &self.addr.clone())?;
        *self = next;
        Ok(())
    }

    /// The TLS directory the standalone made.
    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }

    /// A client trusting the standalone's CA, with its admin pair when `admin`.
    pub fn client(&self, admin: bool) -> Client {
        self.client_with(admin, Duration::from_secs(10))
    }

    /// A client with a request timeout.
    pub fn client_with(&self, admin: bool, timeout: Duration) -> Client {
        let tls = self.tls_dir();
        let mut options = ClientOptions::new(self.addr.clone(), tls.join("ca.pem"));
        options.timeout = timeout;
        if admin {
            options.identity = Some((tls.join("admin.pem"), tls.join("admin.key")));
        }
        Client::new(options).expect("client")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} log ({}) ---\n{}",
                self.program,
                self.log.display(),
                self.log_tail()
            );
        }
        self.kill9();
    }
}

fn listening_addr(line: &str, pid: u32) -> Option<String> {
    let rest = line.strip_prefix("quiver: listening ")?;
    let mut addr = None;
    let mut line_pid = None;
    for field in rest.split_whitespace() {
        if let Some(value) = field.strip_prefix("quic=") {
            addr = Some(value.to_owned());
        }
        if let Some(value) = field.strip_prefix("pid=") {
            line_pid = value.parse::<u32>().ok();
        }
    }
    (line_pid == Some(pid)).then_some(addr).flatten()
}
