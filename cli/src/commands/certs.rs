//! `quiver certs init`.

use std::path::PathBuf;

use quiver_net::tls::{CertPlan, init_dir};

use crate::connect::{GlobalArgs, Output};

#[derive(clap::Subcommand, Debug)]
pub enum CertsCommand {
    /// Create (or reuse) D/ca.{pem,key} and write D/<name>.{pem,key} for each node and client.
    Init(InitArgs),
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Directory to write into.
    #[arg(long)]
    dir: PathBuf,
    /// A node (broker or name server) certificate to make; repeat for several.
    #[arg(long)]
    node: Vec<String>,
    /// Subject alternative names of the node certificates (default: localhost,127.0.0.1).
    #[arg(long)]
    san: Vec<String>,
    /// A client certificate to make; repeat for several.
    #[arg(long)]
    client: Vec<String>,
    /// Give the client certificates the admin role.
    #[arg(long)]
    admin: bool,
}

pub fn run(command: CertsCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let CertsCommand::Init(args) = command;
    if args.admin && args.client.is_empty() {
        anyhow::bail!(
            "--admin gives the --client certificates the admin role, but no --client was given: add e.g. `--client admin --admin`"
        );
    }
    let plan = CertPlan {
        nodes: args
            .node
            .iter()
            .map(|name| (name.clone(), args.san.clone()))
            .collect(),
        clients: args
            .client
            .iter()
            .map(|name| (name.clone(), args.admin))
            .collect(),
    };
    for name in args.node.iter().chain(&args.client) {
        quiver_proto::Name::new(name).map_err(|err| anyhow::anyhow!("certificate name: {err}"))?;
    }
    let written = init_dir(&args.dir, &plan)?;
    match global.output {
        Output::Json => println!("{}", serde_json::json!({ "written": written })),
        Output::Text => {
            for path in &written {
                println!("wrote {}", path.display());
            }
            if written.is_empty() {
                println!(
                    "nothing to write: {} already has a CA; pass --node or --client to add pairs",
                    args.dir.display()
                );
            }
        }
    }
    Ok(())
}
