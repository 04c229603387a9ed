//! A server process under test.
//!
//! The server runs with `QUIVER_EXIT_ON_STDIN_EOF=1` and a piped stdin, so it shuts down when
//! the test process dies; `Drop` kills it. Its stderr goes to `<dir>.log`, which is printed
//! when a test fails. Start-up is awaited on the server's own `listening` line, not on a timer.
//!
//! A server that panicked fails its test: its log holds a Rust panic message, or it exited on
//! its own with the panic exit code or a crash signal. Checked on `Drop` (unless the test is
//! already failing), and on every stop and restart; a `kill -9` or signal the test sent itself
//! is not a crash.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use quiver_client::{Client, ClientOptions};

/// How long a server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the log copier may take to write a dead server's last lines (it only waits for the
/// pipe to close, which the exit does at once).
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The exit code of a Rust process whose main thread panicked.
const PANIC_EXIT_CODE: i32 = 101;
/// Signals that mean the process crashed, unless the test sent them.
const CRASH_SIGNALS: [i32; 5] = [
    libc::SIGABRT,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
];

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
    /// Closed by the log copier when the server's stderr ends, so a check after an exit sees
    /// the server's last lines.
    log_drained: Option<mpsc::Receiver<()>>,
    /// Signals this test sent the process, which are not crashes when it dies of them (a
    /// mutex because `signal` takes `&self`: tests signal servers they also read from).
    sent_signals: Mutex<Vec<i32>>,
    /// How the process ended when it ended on its own abnormally (found at the next stop).
    crash: Option<String>,
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
        let pid = child.id();
        let (ready_rx, log_drained) = tee_stderr(&mut child, &log, pid)?;
        let mut server = Server {
            child: Some(child),
            stdin,
            log_drained: Some(log_drained),
            sent_signals: Mutex::default(),
            crash: None,
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

    /// `kill -9`; panics if the server had panicked or crashed before it (see
    /// [`Server::check_no_panic`]).
    pub fn kill9(&mut self) {
        self.kill9_unchecked();
        if let Err(err) = self.check_no_panic() {
            panic!("{err:#}");
        }
    }

    /// Fails when the server panicked: a Rust panic message in its log, or an exit of its own
    /// with the panic exit code or a crash signal it was not sent. Waits for the log copier
    /// when the process has ended, so its last lines are seen.
    pub fn check_no_panic(&mut self) -> anyhow::Result<()> {
        if self.child.is_none()
            && let Some(drained) = self.log_drained.take()
        {
            let _ = drained.recv_timeout(LOG_DRAIN_TIMEOUT);
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let report = panic_report(&log).or_else(|| self.crash.clone());
        match report {
            None => Ok(()),
            Some(report) => Err(anyhow!(
                "{} (pid {}) panicked or crashed: {report}\n--- log ({}) ---\n{}",
                self.program,
                self.pid(),
                self.log.display(),
                self.log_tail()
            )),
        }
    }

    fn sent(&self) -> Vec<i32> {
        self.sent_signals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Kills the process (when it still runs) and records how it ended if it ended on its own.
    fn kill9_unchecked(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(Some(status)) = child.try_wait() {
                self.crash = abnormal_exit(status, &self.sent());
            } else {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.stdin = None;
    }

    /// Sends a signal (e.g. `libc::SIGSTOP`) without waiting.
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        self.sent_signals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(signal);
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

    /// Sends a signal (e.g. `libc::SIGTERM`) and waits for the exit; an error if the server
    /// panicked or crashed.
    pub fn signal_and_wait(&mut self, signal: i32) -> anyhow::Result<ExitStatus> {
        self.signal(signal)?;
        let child = self.child.as_mut().ok_or_else(|| anyhow!("not running"))?;
        let status = child.wait()?;
        self.child = None;
        self.stdin = None;
        self.crash = abnormal_exit(status, &self.sent());
        self.check_no_panic()?;
        Ok(status)
    }

    /// Starts the same program again on the same address and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.restart_after_downtime(Duration::ZERO)
    }

    /// `kill -9`, then the server stays down for `down` (the scenario: time passes while
    /// it is gone), then starts again on the same address and data directory.
    pub fn restart_after_downtime(&mut self, down: Duration) -> anyhow::Result<()> {
        self.kill9_unchecked();
        std::thread::sleep(down);
        self.check_no_panic()?;
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
        self.kill9_unchecked();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log ({}) ---\n{}",
                self.program,
                self.log.display(),
                self.log_tail()
            );
        } else if let Err(err) = self.check_no_panic() {
            panic!("{err:#}");
        }
    }
}

/// The first Rust panic message in a server log, with the line after it (the message), if
/// any. A panic prints `thread '<name>' panicked at <file>:<line>:<col>:` (newer toolchains
/// put the thread id in parentheses after the name) at the start of a line of stderr.
pub fn panic_report(log: &str) -> Option<String> {
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        let is_panic = line.starts_with("thread '")
            && (line.contains("' panicked at ") || line.contains(") panicked at "));
        if is_panic {
            return Some(match lines.next() {
                Some(message) => format!("{line} {message}"),
                None => line.to_owned(),
            });
        }
    }
    None
}

/// How a process that ended on its own ended, when that was a panic or a crash: the panic
/// exit code, or a crash signal the test did not send.
pub fn abnormal_exit(status: ExitStatus, sent_signals: &[i32]) -> Option<String> {
    if status.code() == Some(PANIC_EXIT_CODE) {
        return Some(format!("exited with code {PANIC_EXIT_CODE} (a panic)"));
    }
    let signal = status.signal()?;
    (CRASH_SIGNALS.contains(&signal) && !sent_signals.contains(&signal))
        .then(|| format!("died of signal {signal}"))
}

/// Copies the child's stderr to `log` on a thread. Returns a channel that gets the bound
/// address from the `listening` line of process `pid`, and one that closes when stderr ends.
fn tee_stderr(
    child: &mut Child,
    log: &Path,
    pid: u32,
) -> anyhow::Result<(mpsc::Receiver<String>, mpsc::Receiver<()>)> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (ready_tx, ready_rx) = mpsc::channel();
    let (drained_tx, drained_rx) = mpsc::channel::<()>();
    let mut log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    std::thread::spawn(move || {
        let _drained = drained_tx;
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
    Ok((ready_rx, drained_rx))
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

#[cfg(test)]
mod tests;
