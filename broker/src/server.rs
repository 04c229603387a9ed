//! Running a broker process: open the store, bind QUIC, announce the bound address (one
//! stderr line and `<data-dir>/ports.json`), serve until shutdown, then flush.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use quiver_net::tls::ServerTls;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::BrokerConfig;
use crate::remoting::{Broker, RemotingConfig, advertise_addr};
use crate::store::Store;

/// Serves until `shutdown` fires, then stops accepting, finishes in-flight requests, syncs
/// the log and makes the index durable.
pub async fn run(
    role: &str,
    config: BrokerConfig,
    tls: ServerTls,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let data_dir = config.broker.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|err| format!("cannot create data directory {}: {err}", data_dir.display()))?;
    let store_config = config.store.clone();
    let dir = data_dir.clone();
    let (store, report) = tokio::task::spawn_blocking(move || Store::open(&dir, store_config))
        .await
        .map_err(|err| format!("store open task failed: {err}"))?
        .map_err(|err| format!("cannot open the store in {}: {err}", data_dir.display()))?;
    info!(
        replayed = report.replayed,
        truncated_bytes = report.truncated_bytes,
        flush = store.flush_mode().name(),
        "store opened"
    );
    let store = Arc::new(store);
    let endpoint =
        quiver_net::endpoint::server(config.broker.listen, &tls).map_err(|err| err.to_string())?;
    let bound = endpoint
        .local_addr()
        .map_err(|err| format!("cannot read the bound address: {err}"))?;
    let advertise = advertise_addr(bound, config.broker.advertise.as_deref())?;
    let remoting = RemotingConfig {
        broker_name: config.broker.name.clone(),
        advertise,
        auto_create_topics: config.broker.auto_create_topics,
        default_queues: config.broker.default_queues,
    };
    let broker = Arc::new(Broker::new(store.clone(), remoting, shutdown.clone()));
    let pid = std::process::id();
    write_ports(&data_dir, pid, &bound.to_string())
        .map_err(|err| format!("cannot write {}/ports.json: {err}", data_dir.display()))?;
    eprintln!("quiver: listening role={role} quic={bound} pid={pid}");
    info!(role, quic = %bound, broker = %config.broker.name, "listening");
    quiver_net::server::serve(endpoint, broker, shutdown).await;
    store.shutdown().await;
    info!("stopped");
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
