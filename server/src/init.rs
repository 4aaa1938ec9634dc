//! `ostracon init`: a data directory with a configuration file, a signing key, a database and
//! an admin token (printed once, written to `admin.token` with mode 0600, stored hashed).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use ostracon_store::Store;
use ostracon_store::clock::Environment;
use ostracon_store::model::Scope;
use ostracon_store::traits::TokenStore as _;
use ostracon_web::auth::{hash_token, token_from_bytes};

use crate::config::{ADMIN_TOKEN_FILE, CONFIG_FILE, Config, SECRET_FILE, XmppSection};
use crate::{ServerError, keyfile};

/// What `init` was asked for.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The data directory to create.
    pub data: PathBuf,
    /// The operator's XMPP domain.
    pub domain: String,
    /// The component JID (default `incidents.DOMAIN` when `xmpp` is given).
    pub component: Option<String>,
    /// The XMPP server's component address.
    pub xmpp: Option<String>,
    /// The component secret (written to its own 0600 file, never into the configuration).
    pub secret: Option<String>,
    /// HTTP listen address.
    pub http: Option<std::net::SocketAddr>,
    /// Database URL (default SQLite in the data directory).
    pub database: Option<String>,
    /// Fixed admin token (`OSTRACON_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
}

/// What `init` made.
#[derive(Debug)]
pub struct Initialized {
    /// The configuration file.
    pub config_path: PathBuf,
    /// The admin token (show it once).
    pub admin_token: String,
    /// The configuration as written.
    pub config: Config,
}

/// Creates the data directory and everything in it. Refuses to touch an existing node.
pub async fn init(options: InitOptions, env: &dyn Environment) -> Result<Initialized, ServerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServerError::Io { path, source }
    };
    let config_path = options.data.join(CONFIG_FILE);
    if config_path.exists() {
        return Err(ServerError::Config(format!(
            "{} exists; this directory already holds a node",
            config_path.display()
        )));
    }
    std::fs::create_dir_all(&options.data).map_err(io(&options.data))?;
    std::fs::set_permissions(&options.data, std::fs::Permissions::from_mode(0o700)).map_err(io(&options.data))?;
    let data = std::fs::canonicalize(&options.data).map_err(io(&options.data))?;

    let mut config = Config::default();
    config.node.domain = options.domain.clone();
    config.node.data_dir = data.clone();
    if let Some(http) = options.http {
        config.http.listen = http;
    }
    config.database.url = options.database.clone();
    if let Some(server) = &options.xmpp {
        let secret_path = data.join(SECRET_FILE);
        let secret = options.secret.clone().unwrap_or_else(|| token_from_bytes(&env.random_bytes()));
        keyfile::write_private(&secret_path, &format!("{secret}\n"))?;
        config.xmpp = Some(XmppSection {
            component: options.component.clone().unwrap_or_else(|| format!("incidents.{}", options.domain)),
            server: server.clone(),
            secret_file: Some(secret_path),
            secret: None,
            auto_approve: false,
            abuse_addresses: Vec::new(),
            forward_hops: 0,
        });
    } else if options.component.is_some() || options.secret.is_some() {
        return Err(ServerError::Config("--component and --secret need --xmpp HOST:PORT".to_owned()));
    }
    let errors: Vec<_> =
        config.check(None).into_iter().filter(|f| f.severity == crate::config::Severity::Error).collect();
    if !errors.is_empty() {
        return Err(ServerError::Refused(errors));
    }

    keyfile::load_or_create(&data, env.now())?;
    let store = Store::open(&config.database_url()).await?;
    let token = options.admin_token.clone().unwrap_or_else(|| token_from_bytes(&env.random_bytes()));
    if token.len() < 16 {
        return Err(ServerError::Config("OSTRACON_ADMIN_TOKEN must be at least 16 characters".to_owned()));
    }
    store.put_token("admin", Scope::Admin, &hash_token(&token), env.now()).await?;
    store.close().await;
    keyfile::write_private(&data.join(ADMIN_TOKEN_FILE), &format!("{token}\n"))?;

    let text = toml::to_string_pretty(&config).map_err(|e| ServerError::Config(e.to_string()))?;
    let header = "# Written by `ostracon init`. Check it with `ostracon config check --config THIS_FILE`.\n\n";
    keyfile::write_private(&config_path, &format!("{header}{text}"))?;
    Ok(Initialized { config_path, admin_token: token, config })
}
