//! `ostracon-harness`: runs a federation of real `ostracon serve` processes (the binary given
//! with `--binary`) on real Prosody servers through scripted attacks, and writes a report
//! (markdown, HTML with SVG plots, JSON). Loopback only; every process it starts is stopped at
//! the end, on failure and on Ctrl-C. Exits non-zero when a scenario's checks fail.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Parser;
use ostracon_tests::harness::{self, RunOptions, Scenario, Topology};

#[derive(Parser)]
#[command(name = "ostracon-harness", about = "The Ostracon federation test harness")]
struct Cli {
    /// The `ostracon` binary the nodes run (e.g. target/release/ostracon).
    #[arg(long)]
    binary: PathBuf,
    /// Honest nodes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// botnet, muc-flood, sybil, liar, outage, retraction, key-rotation, poisoner, or all.
    #[arg(long)]
    scenario: String,
    /// Buddy topology: mesh, ring, hub, random:K or random:K:SEED.
    #[arg(long, default_value = "mesh")]
    topology: String,
    /// Prosody servers (more than one federate over s2s; the outage scenario uses at least 2).
    #[arg(long, default_value_t = 1)]
    servers: usize,
    /// Where the report goes.
    #[arg(long)]
    out: PathBuf,
    /// Share one PostgreSQL server (an admin URL; a database per node is created) instead of
    /// one SQLite file per node.
    #[arg(long)]
    postgres: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let topology = Topology::parse(&cli.topology).map_err(anyhow::Error::msg)?;
    let scenarios = if cli.scenario == "all" {
        Scenario::ALL.to_vec()
    } else {
        vec![Scenario::parse(&cli.scenario).map_err(anyhow::Error::msg)?]
    };
    let binary = std::fs::canonicalize(&cli.binary).with_context(|| format!("{}", cli.binary.display()))?;
    let options = RunOptions {
        binary,
        nodes: cli.nodes,
        servers: cli.servers,
        topology,
        out: None,
        postgres: cli.postgres,
        quiet: false,
    };
    let mut outcomes = Vec::new();
    for scenario in scenarios {
        // Ctrl-C drops the run, and with it every process the federation started.
        let outcome = tokio::select! {
            outcome = harness::run(scenario, &options) => outcome?,
            _ = tokio::signal::ctrl_c() => bail!("interrupted; every process the harness started was stopped"),
        };
        outcomes.push(outcome);
    }
    let written = harness::report::write(&cli.out, &outcomes)?;
    println!("report: {}", written.display());
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| format!("{}: {}", o.scenario, o.failures().join("; ")))
        .collect();
    if !failed.is_empty() {
        bail!("scenario checks failed: {}", failed.join(" | "));
    }
    Ok(())
}
