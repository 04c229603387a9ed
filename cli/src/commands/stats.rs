//! `quiver stats`.

use quiver_client::Admin;
use serde_json::json;

use crate::connect::{Context, Output};
use crate::output::table;

pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    let addr = ctx.namesrv.first().cloned().unwrap_or_default();
    let admin = Admin::new(ctx.client.clone());
    let stats = admin.stats(&addr).await?;
    let reads = admin.read_stats(&addr).await?;
    match ctx.output {
        Output::Json => println!(
            "{}",
            json!({
                "broker": addr, "flush_mode": stats.flush_mode, "msgs_appended": stats.msgs_appended,
                "appends": stats.appends, "fsyncs": stats.fsyncs, "bytes_written": stats.bytes_written,
                "log_start": stats.log_start, "log_end": stats.log_end, "dispatched_upto": stats.dispatched_upto,
                "records_read": reads.records_read, "bytes_read": reads.bytes_read, "slots_scanned": reads.slots_scanned,
            })
        ),
        Output::Text => {
            let rows = vec![
                vec!["flush mode".into(), stats.flush_mode.clone()],
                vec!["messages appended".into(), stats.msgs_appended.to_string()],
                vec!["group commits".into(), stats.appends.to_string()],
                vec!["fsyncs".into(), stats.fsyncs.to_string()],
                vec!["bytes written".into(), stats.bytes_written.to_string()],
                vec!["log start".into(), stats.log_start.to_string()],
                vec!["log end".into(), stats.log_end.to_string()],
                vec!["dispatched up to".into(), stats.dispatched_upto.to_string()],
                vec!["records read".into(), reads.records_read.to_string()],
                vec!["bytes read".into(), reads.bytes_read.to_string()],
                vec![
                    "index slots scanned".into(),
                    reads.slots_scanned.to_string(),
                ],
            ];
            println!("{}", table(&["broker", &addr], rows));
        }
    }
    Ok(())
}
