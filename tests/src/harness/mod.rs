//! The federation test harness: N real nodes on real Prosody servers, scripted attacks from
//! what operators have lived through, and measured outcomes.
//!
//! - [`topology`]: who is whose buddy;
//! - [`federation`]: starting and driving the processes (killed on drop);
//! - [`scenarios`]: the attacks and what each must (and must not) produce;
//! - [`report`]: the markdown and HTML report with SVG plots.
//!
//! `ostracon-harness --binary PATH --nodes N --scenario NAME --out DIR` (`src/bin/ostracon-harness.rs`) runs one from the command line;
//! `server/tests/harness.rs` runs every scenario on five nodes with assertions on outcomes.

pub mod federation;
pub mod report;
pub mod scenarios;
pub mod topology;

use std::path::PathBuf;
use std::time::Instant;

pub use federation::{Federation, FederationSpec};
pub use scenarios::{Outcome, Scenario};
pub use topology::Topology;

/// What can stop a harness run.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The federation could not be set up as asked.
    #[error("setup: {0}")]
    Setup(String),
    /// A node misbehaved (did not start, refused an operator call).
    #[error("node: {0}")]
    Node(String),
    /// Something expected did not happen in time.
    #[error("timed out waiting for {what}; last answer: {last}")]
    Timeout {
        /// What was awaited, and where.
        what: String,
        /// The last answer seen.
        last: String,
    },
    /// Files and processes.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// HTTP to a node.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
}

/// The harness's results.
pub type Result<T> = std::result::Result<T, HarnessError>;

/// Progress lines on stderr, with the time since the run started.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    quiet: bool,
}

impl Progress {
    /// Progress from now; `quiet` prints nothing (tests).
    pub fn new(quiet: bool) -> Self {
        Self { started: Instant::now(), quiet }
    }

    /// Prints one line.
    pub fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("[{:7.1} s] {line}", self.started.elapsed().as_secs_f64());
        }
    }
}

/// One harness run as the command line asks for it.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The `ostracon` binary the nodes run.
    pub binary: PathBuf,
    /// Honest nodes.
    pub nodes: usize,
    /// Prosody servers (the outage scenario uses at least 2).
    pub servers: usize,
    /// Buddy topology among the honest nodes.
    pub topology: Topology,
    /// Where the report goes (`None`: no files).
    pub out: Option<PathBuf>,
    /// Share this PostgreSQL server (admin URL), a database per node, instead of SQLite.
    pub postgres: Option<String>,
    /// Print nothing while running.
    pub quiet: bool,
}

/// Runs `scenario` on a fresh federation and, if asked, writes its report.
pub async fn run(scenario: Scenario, options: &RunOptions) -> Result<Outcome> {
    let progress = Progress::new(options.quiet);
    progress.say(&format!("scenario {scenario}: {} nodes, topology {}", options.nodes, options.topology));
    let outcome = scenarios::run(scenario, options, &progress).await?;
    if let Some(out) = &options.out {
        let written = report::write(out, std::slice::from_ref(&outcome))?;
        progress.say(&format!("report: {}", written.display()));
    }
    progress.say(&format!(
        "{scenario}: {} (false positives {}, false negatives {})",
        if outcome.passed() { "all checks passed" } else { "SOME CHECKS FAILED" },
        outcome.false_positives,
        outcome.false_negatives
    ));
    Ok(outcome)
}
