//! `quiver-broker repair` and `quiver standalone repair`: show what a repair of a corrupt log
//! would cut and, with `--yes`, do it (see `store::repair` for what is kept).

use std::path::PathBuf;

use crate::config::BrokerConfig;
use crate::store::log::repair;

/// Flags of the repair command.
#[derive(Clone, Debug, clap::Args)]
pub struct RepairArgs {
    /// Data directory of the stopped broker (default: the config file's, else ./quiver-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// TOML config file to take the data directory from.
    #[arg(long, env = "QUIVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Carry the repair out; without it nothing changes.
    #[arg(long)]
    pub yes: bool,
}

/// Plans (and with `--yes` applies) the repair; returns the report to print.
pub fn run(args: &RepairArgs, defaults: BrokerConfig) -> Result<String, String> {
    let config = BrokerConfig::load(defaults, args.config.as_deref())?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.broker.data_dir.clone());
    if !data_dir.join("log").is_dir() {
        return Err(format!(
            "{} holds no log directory: pass the broker's data directory with --data-dir",
            data_dir.display()
        ));
    }
    let plan = repair::plan(&data_dir).map_err(|err| format!("cannot read the log: {err}"))?;
    let mut report = plan.describe();
    if plan.cuts.is_empty() {
        return Ok(report);
    }
    if !args.yes {
        report.push_str("nothing was changed: run again with --yes to repair\n");
        return Ok(report);
    }
    let written = repair::apply(&data_dir, &plan).map_err(|err| {
        format!("the repair failed: {err} (is the broker still running? stop it first)")
    })?;
    for path in written {
        report.push_str(&format!("quarantined {}\n", path.display()));
    }
    report.push_str("repaired: index.redb is rebuilt from the log at the next start\n");
    Ok(report)
}
