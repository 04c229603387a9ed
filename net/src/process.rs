//! Process plumbing shared by every server binary: the `listening` announcement and
//! `ports.json`, signal handling, log set-up.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Writes `<data_dir>/ports.json` atomically, then prints the one stderr line test harnesses
/// and operators wait for: `quiver: listening role=<role> quic=<addr> pid=<pid>`.
pub fn announce(role: &str, data_dir: &Path, bound: SocketAddr) -> Result<(), String> {
    let pid = std::process::id();
    write_ports(data_dir, pid, &bound.to_string())
        .map_err(|err| format!("cannot write {}/ports.json: {err}", data_dir.display()))?;
    eprintln!("quiver: listening role={role} quic={bound} pid={pid}");
    info!(role, quic = %bound, "listening");
    Ok(())
}

/// Writes `ports.json` atomically: a temp file, then a rename.
fn write_ports(dir: &Path, pid: u32, quic: &str) -> std::io::Result<()> {
    let text = serde_json::json!({ "pid": pid, "quic": quic }).to_string();
    let tmp = dir.join(format!("ports.json.{pid}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join("ports.json"))
}

/// Cancels `shutdown` on SIGINT or SIGTERM and, when `QUIVER_EXIT_ON_STDIN_EOF=1`, when stdin
/// closes (test harnesses hold the other end, so the server dies with its test).
pub fn watch_signals(shutdown: CancellationToken) {
    let token = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => info!(signal = "SIGTERM", "shutting down"),
            _ = int.recv() => info!(signal = "SIGINT", "shutting down"),
        }
        token.cancel();
    });
    if std::env::var("QUIVER_EXIT_ON_STDIN_EOF").as_deref() == Ok("1") {
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            info!("stdin closed; shutting down");
            shutdown.cancel();
        });
    }
}

/// Installs the tracing subscriber: filter from `QUIVER_LOG` (then `RUST_LOG`, then `info`),
/// human or JSON lines on stderr.
pub fn init_logging(json: bool) {
    let filter = std::env::var("QUIVER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Malloc arenas a server process uses. glibc makes up to 8 per core and each keeps the
/// memory freed in it: with the pull path's large buffers freed on whichever thread ran
/// them, broker RSS stayed near 190 MiB after reading 2 GiB with the default and near
/// 110 MiB with 2, at no cost in throughput (A/B of W3 and W6, 2026-12-02).
pub const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`], unless `MALLOC_ARENA_MAX` is set in the
/// environment (glibc reads it itself, and an operator's choice wins). Call first thing in
/// `main`, before any thread starts.
#[allow(unsafe_code)]
pub fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` sets a tunable of glibc's allocator; it takes plain integers, and
    // glibc serialises it with the allocator's own locks. Called once at start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// Lowers the calling thread's scheduling priority by `nice` steps (Linux: the nice value is
/// per thread). For background threads whose work must never delay a request in flight on
/// a small machine, e.g. the index dispatcher of a broker pinned to one core. Best effort:
/// an error (a sandbox that forbids it) is returned for the caller to log.
#[allow(unsafe_code)]
pub fn lower_thread_priority(nice: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `setpriority` takes plain integers and touches no memory of ours;
        // `PRIO_PROCESS` with `who` 0 names the calling thread on Linux.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
    Ok(())
}
