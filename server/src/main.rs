//! The `ostracon` command line. Parses arguments and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ostracon::{ServeOptions, serve};
use ostracon_protocol::time::Timestamp;

/// Ostracon: signed incident reports, server reputation and verifiable blocklists for XMPP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node. With no flags: data under ./ostracon-data, HTTP on 127.0.0.1:8080, XMPP off.
    Serve {
        /// Data directory (signing key, database).
        #[arg(long, env = "OSTRACON_DATA", default_value = "ostracon-data")]
        data: PathBuf,
        /// The operator's XMPP domain.
        #[arg(long, env = "OSTRACON_DOMAIN", default_value = "localhost")]
        domain: String,
        /// HTTP listen address.
        #[arg(long, env = "OSTRACON_HTTP", default_value = "127.0.0.1:8080")]
        http: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Serve { data, domain, http } => {
            let now = Timestamp::from_datetime(chrono_now());
            serve(ServeOptions { data_dir: data, domain, http }, now, shutdown_signal()).await.context("ostracon serve")
        }
    }
}

/// The wall clock, read only here at the edge.
fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
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
