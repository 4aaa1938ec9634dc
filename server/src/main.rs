//! The `ostracon` command line. Parses arguments and hands over to the library; the wall
//! clock and the OS's randomness enter here, through `SystemEnvironment`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
use ostracon::client::{ApiClient, encode};
use ostracon::config::{ADMIN_TOKEN_FILE, Config, Severity};
use ostracon::error::ServerError;
use ostracon::init::{InitOptions, init};
use ostracon::output::{self, Format, View};
use ostracon::verify::{VerifyOptions, verify};
use ostracon::{SystemEnvironment, serve_with_reload};
use ostracon_protocol::incident::{Category, Severity as IncidentSeverity, Status};
use ostracon_store::model::{Decision, IncidentOrigin, ListKind, Verb};
use reqwest::Method;
use serde_json::{Value, json};

/// Ostracon: signed incident reports, server reputation and verifiable blocklists for XMPP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory: configuration, signing key, database and admin token.
    Init(InitArgs),
    /// Run the node. With no configuration: data in ./ostracon-data, HTTP on 127.0.0.1:8080, XMPP off.
    Serve {
        /// Configuration file (also OSTRACON_CONFIG).
        #[arg(long, env = "OSTRACON_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Submit, list, show and retract incidents (calls the node's API).
    Incident {
        #[command(subcommand)]
        command: IncidentCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Allow entries: offenders that are never listed.
    Allow {
        #[command(subcommand)]
        command: AllowCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deny entries: offenders the operator lists directly.
    Deny {
        #[command(subcommand)]
        command: DenyCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Buddies (XEP-0267): ask, approve, set trust, revoke, list.
    Peers {
        #[command(subcommand)]
        command: PeersCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Check the setup, as prosodyctl check does: the configuration, the component secret, the
    /// handshake with the XMPP server (or the running node's link), and each peer. Exit 1 on a problem.
    Check {
        /// Configuration file (also OSTRACON_CONFIG).
        #[arg(long, env = "OSTRACON_CONFIG")]
        config: Option<PathBuf>,
    },
    /// How the node is doing: the XMPP link and why it is down, each peer's deliveries, the
    /// brake, the lists. A table on a terminal, JSON otherwise (or with -o).
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Offenders with accepted evidence short of a quorum: who reported them, the weights,
    /// the threshold (a lookup by an admin shows the same for one value).
    Candidates {
        /// At most this many (1 to 100).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Where the page starts (the `more: --offset` of the previous page).
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// What we queued for peers, newest first: reports, requests, presences, key fetches;
    /// each with its attempts, next try and last error.
    Outbox {
        /// Only this peer's (its component JID).
        #[arg(long, value_name = "JID")]
        peer: Option<String>,
        /// Only items in this state.
        #[arg(long, value_parser = PossibleValuesParser::new(["pending", "delivered", "failed", "cancelled"]))]
        state: Option<String>,
        /// Only items older than this id (the `more: --before` of the previous page).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// What the brake held: peers' changes over their hourly budget, waiting for you.
    Held {
        #[command(subcommand)]
        command: HeldCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The audit log as the operator reads it (sealed leaves opened), and erasing an opening.
    Log {
        #[command(subcommand)]
        command: LogCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The node's signing key.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
        /// Configuration file (also OSTRACON_CONFIG).
        #[arg(long, env = "OSTRACON_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Operator tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Write a list to a file for consumers that read files (ejabberd mod_spam_filter's
    /// spam_jids_file, a firewall loader): one value per line, no comments or blank lines,
    /// `block` entries only unless asked, replaced atomically and only when it changed. Run it
    /// from a timer; exit status 0 either way, and it says whether the file changed.
    Export {
        /// Which list.
        #[arg(long, default_value = "jid", value_parser = PossibleValuesParser::new(["ip", "jid", "domain"]))]
        kind: String,
        /// Which entries.
        #[arg(long, default_value = "block", value_parser = PossibleValuesParser::new(["block", "quarantine", "observe", "all"]))]
        action: String,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Is an IP, CIDR, JID or domain listed, and why?
    Lookup {
        /// What the value is.
        #[arg(value_parser = PossibleValuesParser::new(["ip", "cidr", "jid", "domain"]))]
        kind: String,
        /// The value.
        value: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Reputation: `reputation DOMAIN` shows a domain's score and its components; the
    /// subcommands list scores and set or clear the operator's fixed score.
    #[command(args_conflicts_with_subcommands = true)]
    Reputation {
        /// The domain to show.
        domain: Option<String>,
        #[command(subcommand)]
        command: Option<ReputationCommand>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The listing policy.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Verify a published list end to end: signature, log inclusion, and growth since a saved checkpoint.
    Verify {
        /// The node's base URL, e.g. https://ostracon.example.org
        url: String,
        /// Saved checkpoint: checked for consistency if present, replaced on success.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Which list.
        #[arg(long, default_value = "ip", value_parser = PossibleValuesParser::new(["ip", "jid", "domain"]))]
        kind: String,
        /// Pinned public key (base64); default: the key the node publishes. A key pinned
        /// before a rotation is followed through the rotations it signed in the log.
        #[arg(long)]
        key: Option<String>,
        /// The largest log this run accepts (it keeps 32 bytes per leaf): a hostile server
        /// cannot make it fetch or hold more.
        #[arg(long, default_value_t = ostracon::verify::DEFAULT_MAX_LEAVES)]
        max_leaves: u64,
    },
}

#[derive(Args)]
struct InitArgs {
    /// Data directory to create.
    #[arg(long)]
    data: PathBuf,
    /// The operator's XMPP domain.
    #[arg(long)]
    domain: String,
    /// Component JID (default incidents.DOMAIN).
    #[arg(long)]
    component: Option<String>,
    /// The XMPP server's component port (XEP-0114), e.g. 127.0.0.1:5347.
    #[arg(long)]
    xmpp: Option<String>,
    /// The component secret (stored in DATA/component.secret, mode 0600; visible to `ps`
    /// while init runs: prefer --secret-file). Without either, one is generated.
    #[arg(long)]
    secret: Option<String>,
    /// A file holding the component secret (copied into DATA/component.secret); `-` reads it
    /// from standard input, or asks for it without echo at a terminal.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// HTTP listen address.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Database URL (default: SQLite in the data directory).
    #[arg(long)]
    database: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Refuse insecure or inconsistent settings (exit status 1), print warnings.
    Check {
        /// Configuration file (also OSTRACON_CONFIG).
        #[arg(long, env = "OSTRACON_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Where the node's API is, how to authenticate, and how to print the answer.
#[derive(Args)]
struct ApiArgs {
    /// Output: text (tables) or json (the API's answer). Default: text on a terminal, json otherwise.
    #[arg(long, short = 'o', global = true, value_parser = PossibleValuesParser::new(["text", "json"]))]
    output: Option<String>,
    /// Node API base URL (default: from the configuration, else http://127.0.0.1:8080).
    #[arg(long, env = "OSTRACON_URL", global = true)]
    url: Option<String>,
    /// Operator token (default: OSTRACON_TOKEN, else DATA_DIR/admin.token).
    #[arg(long, env = "OSTRACON_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Configuration file, to find the URL and the admin token file.
    #[arg(long, env = "OSTRACON_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum IncidentCommand {
    /// Submit an incident.
    Submit {
        /// An offender: IP, CIDR, JID or domain (repeatable).
        #[arg(long = "offender", required = true)]
        offenders: Vec<String>,
        /// What kind of abuse.
        #[arg(long, value_parser = PossibleValuesParser::new(Category::NAMES))]
        category: String,
        /// How bad (it sets the listing time and the reputation weight).
        #[arg(long, default_value = "medium", value_parser = PossibleValuesParser::new(IncidentSeverity::NAMES))]
        severity: String,
        /// What happened.
        #[arg(long, default_value = "")]
        description: String,
        /// Requested action, e.g. block-host.
        #[arg(long)]
        action: Option<String>,
        /// Listing time in seconds (default: by severity, longer for repeat offenders).
        #[arg(long)]
        ttl: Option<i64>,
        /// Share with buddies.
        #[arg(long)]
        share: bool,
    },
    /// List incidents, newest first, with what each does to our lists now.
    List {
        /// Only incidents with this status.
        #[arg(long, value_parser = PossibleValuesParser::new(Status::NAMES))]
        status: Option<String>,
        /// Only incidents of this category.
        #[arg(long, value_parser = PossibleValuesParser::new(Category::NAMES))]
        category: Option<String>,
        /// Only what we decided so (pending: waits for you).
        #[arg(long, value_parser = PossibleValuesParser::new(Decision::NAMES))]
        decision: Option<String>,
        /// Only incidents from there (local: yours; peer: a buddy's signed report).
        #[arg(long, value_parser = PossibleValuesParser::new(IncidentOrigin::NAMES))]
        origin: Option<String>,
        /// Only reports, requests or responses.
        #[arg(long, value_parser = PossibleValuesParser::new(Verb::NAMES))]
        verb: Option<String>,
        /// Only incidents reported by this JID.
        #[arg(long, value_name = "JID")]
        reporter: Option<String>,
        /// Only incidents older than this sequence number (the `next` of the previous page).
        #[arg(long, value_name = "SEQ")]
        before: Option<i64>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one incident: its offenders, what it does to our lists now, its log leaves.
    Show {
        /// The incident id (`incident list` shows them).
        id: String,
    },
    /// Retract a local incident: its listings lose this reason, buddies get the retraction.
    Retract {
        /// The incident id.
        id: String,
    },
    /// Accept a report waiting for you (decision `pending`: a user's XEP-0377 report relayed by
    /// a buddy, or an unsigned XEP-0268 report): its offenders are listed.
    Accept {
        /// The incident id (`incident list --decision pending` shows them).
        id: String,
    },
    /// Ask the offender's home server to act on a local report (XEP-0268 request).
    Request {
        /// The local incident's id.
        id: String,
        /// The home server's Ostracon component JID.
        #[arg(long)]
        to: String,
    },
    /// Ask a peer for its report about an incident id (XEP-0268 inquiry).
    Inquire {
        /// The incident id to ask about.
        id: String,
        /// The peer's component JID.
        #[arg(long)]
        to: String,
    },
    /// Answer a request: list what you found (e.g. the flooder's IPs) under your signature.
    Respond {
        /// The request's incident id.
        id: String,
        /// What you found (repeatable): typically IPs only your server knows.
        #[arg(long = "offender", required = true)]
        offenders: Vec<String>,
        /// What you did, e.g. block-host or disable-account.
        #[arg(long, default_value = "block-host")]
        action: String,
        /// A note for the requester.
        #[arg(long, default_value = "")]
        note: String,
        /// Listing time in seconds.
        #[arg(long)]
        ttl: Option<i64>,
    },
}

#[derive(Subcommand)]
enum AllowCommand {
    /// Allow an address, block, JID or domain: never listed while allowed; a block covers
    /// every address and narrower block inside it.
    Add {
        /// What to allow (192.0.2.50, 198.51.100.0/24, user@example.org, example.org).
        value: String,
        /// Why (shown to operators only).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Remove an allow entry (the entry itself, not an address inside a block).
    Remove {
        /// The entry's value, as listed.
        value: String,
    },
    /// List allow entries.
    List,
}

#[derive(Subcommand)]
enum DenyCommand {
    /// List an address, block, JID or domain directly, with no incident behind it.
    Add {
        /// What to list (192.0.2.50, 198.51.100.0/24, user@example.org, example.org).
        value: String,
        /// What consumers should do.
        #[arg(long, default_value = "block", value_parser = PossibleValuesParser::new(["block", "quarantine", "observe"]))]
        action: String,
        /// Seconds until it expires (default: never).
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<i64>,
    },
    /// Remove a deny entry.
    Remove {
        /// The entry's value, as listed.
        value: String,
    },
    /// List deny entries.
    List,
}

#[derive(Subcommand)]
enum ReputationCommand {
    /// Stored scores, worst (default) or best first.
    List {
        /// worst or best.
        #[arg(long, default_value = "worst", value_parser = PossibleValuesParser::new(["worst", "best"]))]
        order: String,
        /// Page size (1-500).
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Where the page starts.
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Fix a domain's score (its consequences apply at once; an audit leaf records it).
    Override {
        /// The domain.
        domain: String,
        /// The score in [-100, 100].
        #[arg(allow_negative_numbers = true)]
        score: i64,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Remove a fixed score; the computed one applies again.
    Clear {
        /// The domain.
        domain: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// What another listing threshold would list and delist, without changing anything.
    DryRun {
        /// The threshold to try (the weight of independent reporters that lists; default 1.0).
        #[arg(long)]
        threshold: f64,
    },
}

#[derive(Subcommand)]
enum PeersCommand {
    /// Ask a node to be a buddy (sends a presence subscription from our component).
    Add {
        /// The peer's component JID, e.g. incidents.example.net
        jid: String,
        /// observe, accept or auto-apply.
        #[arg(long, default_value = "accept", value_parser = PossibleValuesParser::new(["observe", "accept", "auto-apply"]))]
        trust: String,
    },
    /// Approve a node that asked us (pins the key fingerprints shown by `peers list`).
    Approve {
        /// The peer's component JID.
        jid: String,
        /// observe, accept or auto-apply.
        #[arg(long, default_value = "accept", value_parser = PossibleValuesParser::new(["observe", "accept", "auto-apply"]))]
        trust: String,
    },
    /// Change a peer's trust level (re-weighs what its reports contributed).
    Trust {
        /// The peer's component JID.
        jid: String,
        /// The new trust level.
        #[arg(value_parser = PossibleValuesParser::new(["observe", "accept", "auto-apply"]))]
        trust: String,
    },
    /// End a buddy relation (cancels everything still queued for it).
    Revoke {
        /// The peer's component JID.
        jid: String,
    },
    /// List peers with their state, trust, deliveries and key fingerprints.
    List,
    /// The buddies' latest answers about a server's reputation (XEP-0275 style scores).
    Scores {
        /// The server asked about (a domain).
        subject: String,
    },
    /// Ask every buddy for its score of a server; `peers scores` shows the answers.
    AskScores {
        /// The server to ask about (a domain).
        subject: String,
    },
}

#[derive(Subcommand)]
enum HeldCommand {
    /// List the held changes, oldest first.
    List {
        /// Only this peer's (its component JID).
        #[arg(long)]
        peer: Option<String>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Where the page starts (the `more: --offset` of the previous page).
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Apply them (up to 1,000 at a time): listings with the weight they would have had,
    /// retractions in full.
    Release {
        /// Only this peer's (its component JID).
        #[arg(long)]
        peer: Option<String>,
    },
    /// Drop them (up to 1,000 at a time), with a log leaf per incident.
    Discard {
        /// Only this peer's (its component JID).
        #[arg(long)]
        peer: Option<String>,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Leaves from START (default: the last 20), with the openings of sealed leaves.
    Show {
        /// The first leaf.
        #[arg(long)]
        start: Option<u64>,
        /// How many (at most 1,000).
        #[arg(long, default_value_t = 20)]
        count: u64,
    },
    /// Forget for good what sealed leaf INDEX said (a takedown, an erasure request). The leaf
    /// and every proof stay; an opening-erased leaf records it.
    Erase {
        /// The sealed leaf's index (`log show` lists them).
        index: u64,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print the current signing key's id and fingerprint (the one buddies compare), and the
    /// retired keys still published.
    Show,
    /// Replace the signing key (stop the node first). The old key signs an announcement that
    /// buddies use to pin the new one; the old public key stays published as retired.
    Rotate,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token (shown once).
    Create {
        /// A name to revoke it by (a person, a script).
        name: String,
        /// submit: incidents only; metrics: /metrics with per-peer numbers only; bouncer: the
        /// CrowdSec-compatible decision stream only (a bouncer's api_key); admin: everything.
        #[arg(long, default_value = "submit", value_parser = PossibleValuesParser::new(["submit", "metrics", "bouncer", "admin"]))]
        scope: String,
    },
    /// List tokens.
    List,
    /// Revoke a token.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn load_config(path: Option<&Path>) -> Result<Config, ServerError> {
    match path {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    }
}

impl ApiArgs {
    fn client(&self) -> Result<ApiClient, ServerError> {
        let config = load_config(self.config.as_deref())?;
        let url = self.url.clone().unwrap_or_else(|| config.api_url());
        let token = match &self.token {
            Some(token) => Some(token.clone()),
            None => {
                std::fs::read_to_string(config.node.data_dir.join(ADMIN_TOKEN_FILE)).ok().map(|t| t.trim().to_owned())
            }
        };
        ApiClient::new(&url, token)
    }

    fn format(&self) -> Format {
        Format::choose(self.output.as_deref())
    }
}

/// What `serve` logs when RUST_LOG is not set.
const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,hickory_server=warn";

/// glibc's malloc variable for the size from which a block gets a mapping of its own.
const MMAP_THRESHOLD_VARIABLE: &str = "MALLOC_MMAP_THRESHOLD_";

/// Blocks from this size up (a snapshot's body, its gzip) are mapped apart and unmapped when
/// freed.
const MMAP_THRESHOLD: &str = "1048576";

/// `serve` runs with a fixed mmap threshold. glibc raises the threshold each time a large
/// mapped block is freed, after which the next snapshot body is carved from the heap and its
/// pages are never returned: after one pull of each list format a 1M-entry node kept 1.7
/// times its resting memory, 2.4 times at 100k entries (1.25 and 1.2 with the threshold
/// fixed, BENCHMARKS.md). glibc reads the variable only at start-up, and setting it from
/// within takes unsafe code, so `serve` executes itself once more with it, unless the
/// operator set it. Returns only if that fails.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn serve_with_fixed_mmap_threshold() -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_default();
    match std::env::current_exe() {
        Ok(binary) => std::process::Command::new(binary)
            .arg0(program)
            .args(args)
            .env(MMAP_THRESHOLD_VARIABLE, MMAP_THRESHOLD)
            .exec(),
        Err(error) => error,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if matches!(cli.command, Command::Serve { .. }) && std::env::var_os(MMAP_THRESHOLD_VARIABLE).is_none() {
        let error = serve_with_fixed_mmap_threshold();
        eprintln!(
            "warning: could not restart with {MMAP_THRESHOLD_VARIABLE}={MMAP_THRESHOLD} ({error}); serving on with glibc's default"
        );
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run_cli(cli)),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_cli(cli: Cli) -> ExitCode {
    if matches!(cli.command, Command::Serve { .. }) {
        // RUST_LOG overrides the filter (`RUST_LOG=debug`, `RUST_LOG=ostracon=debug,sqlx=info`);
        // sqlx's line per query stays off by default, and so do hickory-server's two lines per
        // DNSBL query (they would cost more than the answer and log every asker's address).
        // Colour only on a terminal, never with
        // NO_COLOR (https://no-color.org): log files and journald get plain text.
        use std::io::IsTerminal as _;
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_LOG_FILTER.into()),
            )
            .with_ansi(colour)
            .init();
    }
    match run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode, ServerError> {
    let env = Arc::new(SystemEnvironment);
    let admin_token = std::env::var("OSTRACON_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
    match command {
        Command::Init(mut args) => {
            use std::io::IsTerminal as _;
            if args.secret_file.as_deref().is_some_and(|path| path.as_os_str() == "-")
                && args.secret.is_none()
                && std::io::stdin().is_terminal()
            {
                let typed =
                    rpassword::prompt_password("component secret (the one in the XMPP server's configuration): ")
                        .map_err(|source| ServerError::Io { path: PathBuf::from("/dev/tty"), source })?;
                (args.secret, args.secret_file) = (Some(typed), None);
            }
            let made = init(
                InitOptions {
                    data: args.data,
                    domain: args.domain,
                    component: args.component,
                    xmpp: args.xmpp,
                    secret: args.secret,
                    secret_file: args.secret_file,
                    http: args.http,
                    database: args.database,
                    admin_token: admin_token.clone(),
                },
                env.as_ref(),
            )
            .await?;
            println!("wrote {}", made.config_path.display());
            if admin_token.is_none() {
                println!(
                    "admin token (shown once; also in {}):",
                    made.config.node.data_dir.join(ADMIN_TOKEN_FILE).display()
                );
                println!("{}", made.admin_token);
            }
            if let Some(xmpp) = &made.config.xmpp {
                let secret = made.config.node.data_dir.join(ostracon::config::SECRET_FILE);
                println!(
                    "the XMPP server needs the component with the secret in {}: Prosody: Component \"{}\" with \
                     component_secret; ejabberd: ejabberd_service with that password",
                    secret.display(),
                    xmpp.component
                );
            }
            for finding in made.config.check(Some(&made.config_path)) {
                println!("{finding}");
            }
            println!("start the node with: ostracon serve --config {}", made.config_path.display());
        }
        Command::Serve { config } => {
            let loaded = load_config(config.as_deref())?;
            for finding in loaded.check(config.as_deref()).iter().filter(|f| f.severity == Severity::Warning) {
                tracing::warn!("{}", finding.message);
            }
            let errors: Vec<_> =
                loaded.check(config.as_deref()).into_iter().filter(|f| f.severity == Severity::Error).collect();
            if !errors.is_empty() {
                return Err(ServerError::Refused(errors));
            }
            let address = loaded.http.listen;
            let listener =
                tokio::net::TcpListener::bind(address).await.map_err(|source| ServerError::Bind { address, source })?;
            serve_with_reload(loaded, config, env, admin_token, listener, shutdown_signal()).await?;
        }
        Command::Config { command: ConfigCommand::Check { config } } => {
            let loaded = load_config(config.as_deref())?;
            let findings = loaded.check(config.as_deref());
            for finding in &findings {
                println!("{finding}");
            }
            if findings.iter().any(|f| f.severity == Severity::Error) {
                return Ok(ExitCode::FAILURE);
            }
            match &config {
                Some(path) => println!("configuration ok: {}", path.display()),
                None => println!(
                    "configuration ok: no --config given (nor OSTRACON_CONFIG), so the built-in defaults were checked"
                ),
            }
        }
        Command::Incident { command, api } => {
            let client = api.client()?;
            let view = if matches!(command, IncidentCommand::List { .. }) { output::INCIDENTS } else { View::Fields };
            let value = match command {
                IncidentCommand::Submit { offenders, category, severity, description, action, ttl, share } => {
                    let mut body = json!({ "offenders": offenders, "category": category, "severity": severity,
                        "description": description, "share": share });
                    if let Some(action) = action {
                        body["action"] = json!(action);
                    }
                    if let Some(ttl) = ttl {
                        body["ttl_seconds"] = json!(ttl);
                    }
                    client.json(Method::POST, "/v1/incidents", Some(&body)).await?
                }
                IncidentCommand::List { status, category, decision, origin, verb, reporter, before, limit } => {
                    let mut path = format!("/v1/incidents?limit={limit}");
                    let before = before.map(|seq| seq.to_string());
                    for (name, value) in [
                        ("status", status),
                        ("category", category),
                        ("decision", decision),
                        ("origin", origin),
                        ("verb", verb),
                        ("reporter", reporter),
                        ("before", before),
                    ] {
                        if let Some(value) = value {
                            path.push_str(&format!("&{name}={}", encode(&value)));
                        }
                    }
                    client.json(Method::GET, &path, None).await?
                }
                IncidentCommand::Show { id } => {
                    client.json(Method::GET, &format!("/v1/incidents/{}", encode(&id)), None).await?
                }
                IncidentCommand::Retract { id } => {
                    client.json(Method::POST, &format!("/v1/incidents/{}/retract", encode(&id)), None).await?
                }
                IncidentCommand::Accept { id } => {
                    client.json(Method::POST, &format!("/v1/incidents/{}/accept", encode(&id)), None).await?
                }
                IncidentCommand::Request { id, to } => {
                    let path = format!("/v1/incidents/{}/request", encode(&id));
                    client.json(Method::POST, &path, Some(&json!({ "to": to }))).await?
                }
                IncidentCommand::Inquire { id, to } => {
                    let path = format!("/v1/incidents/{}/inquire", encode(&id));
                    client.json(Method::POST, &path, Some(&json!({ "to": to }))).await?
                }
                IncidentCommand::Respond { id, offenders, action, note, ttl } => {
                    let mut body = json!({ "offenders": offenders, "action": action, "note": note });
                    if let Some(ttl) = ttl {
                        body["ttl_seconds"] = json!(ttl);
                    }
                    client.json(Method::POST, &format!("/v1/incidents/{}/respond", encode(&id)), Some(&body)).await?
                }
            };
            output::print(&value, api.format(), view);
        }
        Command::Allow { command, api } => {
            let client = api.client()?;
            let view = if matches!(command, AllowCommand::List) { output::ALLOW } else { View::Fields };
            let value = match command {
                AllowCommand::Add { value, note } => {
                    client.json(Method::POST, "/v1/allow", Some(&json!({ "value": value, "note": note }))).await?
                }
                AllowCommand::Remove { value } => remove_entry(&client, "allow", &value).await?,
                AllowCommand::List => client.json(Method::GET, "/v1/allow", None).await?,
            };
            output::print(&value, api.format(), view);
        }
        Command::Deny { command, api } => {
            let client = api.client()?;
            let view = if matches!(command, DenyCommand::List) { output::DENY } else { View::Fields };
            let value = match command {
                DenyCommand::Add { value, action, ttl } => {
                    let mut body = json!({ "value": value, "action": action });
                    if let Some(ttl) = ttl {
                        body["ttl_seconds"] = json!(ttl);
                    }
                    client.json(Method::POST, "/v1/deny", Some(&body)).await?
                }
                DenyCommand::Remove { value } => remove_entry(&client, "deny", &value).await?,
                DenyCommand::List => client.json(Method::GET, "/v1/deny", None).await?,
            };
            output::print(&value, api.format(), view);
        }
        Command::Key { command: KeyCommand::Show, config } => {
            let loaded = load_config(config.as_deref())?;
            let data = &loaded.node.data_dir;
            if !data.join("signing.key").exists() {
                return Err(ServerError::Config(format!(
                    "{} has no signing key: give --config of an initialised node (ostracon init)",
                    data.display()
                )));
            }
            let current =
                ostracon::keyfile::load_or_create(data, ostracon_store::clock::Environment::now(env.as_ref()))?;
            println!("key {} since {}", current.key.key_id(), current.valid_from);
            println!("fingerprint {}", current.key.public().fingerprint());
            for retired in ostracon::keyfile::load_retired(data)? {
                let until = retired.valid_until.map_or_else(|| "-".to_owned(), |t| t.to_string());
                println!("retired {} until {until} (fingerprint {})", retired.kid, retired.key.fingerprint());
            }
        }
        Command::Key { command: KeyCommand::Rotate, config } => {
            let loaded = load_config(config.as_deref())?;
            let rotated = match ostracon::rotate_key(&loaded, env.as_ref()).await {
                Ok(rotated) => rotated,
                // The node runs: it rotates its own key, so it signs with the new one at once.
                Err(ServerError::DataDirInUse { .. }) => {
                    let api = ApiArgs { output: None, url: None, token: None, config: config.clone() };
                    let answer = api.client()?.json(Method::POST, "/v1/key/rotate", None).await?;
                    serde_json::from_value(answer)
                        .map_err(|e| ServerError::Client(format!("POST /v1/key/rotate: {e}")))?
                }
                Err(error) => return Err(error),
            };
            println!("retired key {}", rotated.old);
            println!("new key {} (fingerprint {})", rotated.new, rotated.fingerprint);
            println!(
                "announcement queued for {} buddies ({}); the node signs with the new key from now on",
                rotated.announced_to.len(),
                if rotated.announced_to.is_empty() { "none".to_owned() } else { rotated.announced_to.join(", ") }
            );
        }
        Command::Check { config } => {
            let loaded = load_config(config.as_deref())?;
            let report = ostracon::check::check(&loaded, config.as_deref()).await;
            for checked in &report {
                let mark = if checked.ok { "ok     " } else { "PROBLEM" };
                println!("{mark}  {}: {}", checked.what, checked.detail);
            }
            if report.iter().any(|c| !c.ok) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Status { api } => {
            let value = api.client()?.json(Method::GET, "/v1/status", None).await?;
            match api.format() {
                Format::Text => print!("{}", ostracon::status::render(&value)),
                Format::Json => output::print(&value, Format::Json, View::Fields),
            }
        }
        Command::Candidates { limit, offset, api } => {
            let path = format!("/v1/candidates?limit={limit}&offset={offset}");
            output::print(&api.client()?.json(Method::GET, &path, None).await?, api.format(), output::CANDIDATES);
        }
        Command::Outbox { peer, state, before, limit, api } => {
            let mut path = format!("/v1/outbox?limit={limit}");
            for (name, value) in [("peer", peer), ("state", state), ("before", before.map(|id| id.to_string()))] {
                if let Some(value) = value {
                    path.push_str(&format!("&{name}={}", encode(&value)));
                }
            }
            output::print(&api.client()?.json(Method::GET, &path, None).await?, api.format(), output::OUTBOX);
        }
        Command::Log { command, api } => {
            let client = api.client()?;
            let view = if matches!(command, LogCommand::Show { .. }) { output::LOG } else { View::Fields };
            let value = match command {
                LogCommand::Show { start, count } => {
                    let start = match start {
                        Some(start) => start,
                        None => {
                            let size = client.json(Method::GET, "/v1/log/entries?start=0&end=0", None).await?["size"]
                                .as_u64()
                                .unwrap_or(0);
                            size.saturating_sub(count)
                        }
                    };
                    let end = start.saturating_add(count.min(1_000));
                    client.json(Method::GET, &format!("/v1/log/entries?start={start}&end={end}"), None).await?
                }
                LogCommand::Erase { index } => {
                    client.json(Method::DELETE, &format!("/v1/log/openings/{index}"), None).await?
                }
            };
            output::print(&value, api.format(), view);
        }
        Command::Held { command, api } => {
            let client = api.client()?;
            let view = if matches!(command, HeldCommand::List { .. }) { output::HELD } else { View::Fields };
            let value = match command {
                HeldCommand::List { peer, limit, offset } => {
                    let mut path = format!("/v1/held?limit={limit}&offset={offset}");
                    if let Some(peer) = peer {
                        path.push_str(&format!("&peer={}", encode(&peer)));
                    }
                    client.json(Method::GET, &path, None).await?
                }
                HeldCommand::Release { peer } => {
                    client.json(Method::POST, "/v1/held/release", Some(&json!({ "peer": peer }))).await?
                }
                HeldCommand::Discard { peer } => {
                    client.json(Method::POST, "/v1/held/discard", Some(&json!({ "peer": peer }))).await?
                }
            };
            output::print(&value, api.format(), view);
        }
        Command::Peers { command, api } => {
            let client = api.client()?;
            let view = match command {
                PeersCommand::List => output::PEERS,
                PeersCommand::Scores { .. } => output::PEER_SCORES,
                _ => View::Fields,
            };
            let value = match command {
                PeersCommand::Add { jid, trust } => {
                    client.json(Method::POST, "/v1/peers", Some(&json!({ "jid": jid, "trust": trust }))).await?
                }
                PeersCommand::Approve { jid, trust } => {
                    let path = format!("/v1/peers/{}/approve", encode(&jid));
                    client.json(Method::POST, &path, Some(&json!({ "trust": trust }))).await?
                }
                PeersCommand::Trust { jid, trust } => {
                    let path = format!("/v1/peers/{}/trust", encode(&jid));
                    client.json(Method::POST, &path, Some(&json!({ "trust": trust }))).await?
                }
                PeersCommand::Revoke { jid } => {
                    client.json(Method::DELETE, &format!("/v1/peers/{}", encode(&jid)), None).await?;
                    json!({ "revoked": jid, "cancelled": "everything still queued for it" })
                }
                PeersCommand::List => client.json(Method::GET, "/v1/peers", None).await?,
                PeersCommand::Scores { subject } => {
                    client.json(Method::GET, &format!("/v1/peers/scores?subject={}", encode(&subject)), None).await?
                }
                PeersCommand::AskScores { subject } => {
                    client.json(Method::POST, "/v1/peers/scores/ask", Some(&json!({ "subject": subject }))).await?
                }
            };
            output::print(&value, api.format(), view);
        }
        Command::Token { command, api } => {
            let client = api.client()?;
            let view = if matches!(command, TokenCommand::List) { output::TOKENS } else { View::Fields };
            let value = match command {
                TokenCommand::Create { name, scope } => {
                    client.json(Method::POST, "/v1/tokens", Some(&json!({ "name": name, "scope": scope }))).await?
                }
                TokenCommand::List => client.json(Method::GET, "/v1/tokens", None).await?,
                TokenCommand::Revoke { name } => {
                    client.json(Method::DELETE, &format!("/v1/tokens/{}", encode(&name)), None).await?;
                    json!({ "revoked": name })
                }
            };
            output::print(&value, api.format(), view);
        }
        Command::Export { kind, action, file, api } => {
            let exported = ostracon::export::export(&api.client()?, &kind, &action, &file).await?;
            let what = if exported.changed { "written" } else { "unchanged" };
            println!("{}: {what}, {} entries", file.display(), exported.entries);
        }
        Command::Lookup { kind, value, api } => {
            let client = api.client()?;
            let answer = client.json(Method::GET, &format!("/v1/lookup/{}/{}", encode(&kind), value), None).await?;
            output::print(&answer, api.format(), View::Fields);
        }
        Command::Reputation { domain, command, api } => {
            let client = api.client()?;
            let view =
                if matches!(command, Some(ReputationCommand::List { .. })) { output::REPUTATION } else { View::Fields };
            let value = match (domain, command) {
                (Some(domain), _) => {
                    client.json(Method::GET, &format!("/v1/reputation/{}", encode(&domain)), None).await?
                }
                (None, Some(ReputationCommand::List { order, limit, offset })) => {
                    let path = format!("/v1/reputation?order={}&limit={limit}&offset={offset}", encode(&order));
                    client.json(Method::GET, &path, None).await?
                }
                (None, Some(ReputationCommand::Override { domain, score, note })) => {
                    let path = format!("/v1/reputation/{}/override", encode(&domain));
                    client.json(Method::PUT, &path, Some(&json!({ "score": score, "note": note }))).await?
                }
                (None, Some(ReputationCommand::Clear { domain })) => {
                    client.json(Method::DELETE, &format!("/v1/reputation/{}/override", encode(&domain)), None).await?
                }
                (None, None) => {
                    return Err(ServerError::Client(
                        "name a domain (ostracon reputation DOMAIN) or a subcommand (list, override, clear)".to_owned(),
                    ));
                }
            };
            output::print(&value, api.format(), view);
        }
        Command::Policy { command: PolicyCommand::DryRun { threshold }, api } => {
            let path = format!("/v1/policy/dry-run?threshold={threshold}");
            output::print(&api.client()?.json(Method::GET, &path, None).await?, api.format(), View::Fields);
        }
        Command::Verify { url, checkpoint, kind, key, max_leaves } => {
            let list = match kind.as_str() {
                "ip" => ListKind::Ip,
                "jid" => ListKind::Jid,
                "domain" => ListKind::Domain,
                other => return Err(ServerError::Client(format!("--kind {other:?}: use ip, jid or domain"))),
            };
            let report =
                verify(&VerifyOptions { url, list, checkpoint_file: checkpoint.clone(), key, max_leaves }).await?;
            if !report.rotations.is_empty() {
                let steps: Vec<String> = report.rotations.iter().map(|(old, new)| format!("{old} -> {new}")).collect();
                println!(
                    "ok: followed {} signed key rotation{} from the pinned key: {}",
                    steps.len(),
                    if steps.len() == 1 { "" } else { "s" },
                    steps.join(", ")
                );
            }
            println!("ok: {} {} entries signed by key {}", report.entries, list, report.key_id);
            println!(
                "ok: every entry is in the log at size {} (log now {})",
                report.snapshot_log_size, report.log_size
            );
            match report.grew_from {
                Some(old) => {
                    println!("ok: the log only grew since the saved checkpoint ({old} -> {})", report.log_size)
                }
                None if checkpoint.is_some() => println!("no saved checkpoint yet; saved this one"),
                None => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes an allow or deny entry; says what was removed (the API answers 204, no body).
async fn remove_entry(client: &ApiClient, list: &str, value: &str) -> Result<Value, ServerError> {
    client.json(Method::DELETE, &format!("/v1/{list}?value={}", encode(value)), None).await?;
    Ok(json!({ "removed": value, "list": list }))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    /// Clap checks a command's definition only when it is used: every verb is checked here,
    /// so a clash (two arguments named alike) fails the tests, not an operator.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
