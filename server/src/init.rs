//! `ostracon init`: a data directory with a configuration file, a signing key, a database and
//! an admin token (printed once, written to `admin.token` with mode 0600, stored hashed).
//!
//! Everything is made in a hidden staging directory and moved into place at the end, so a
//! failed `init` leaves nothing behind and can simply be run again. A new data directory is
//! staged beside the target and renamed in one step; an existing empty one (the package's
//! `/var/lib/ostracon`, whose parent the service user cannot write) is staged inside and
//! filled file by file, the configuration last, since a node is a directory with a
//! configuration.

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
    /// A file holding the component secret (instead of `secret`, which `ps` shows).
    pub secret_file: Option<PathBuf>,
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

/// Creates the data directory and everything in it. Refuses to touch an existing node; an
/// existing empty directory (one a package made) is filled.
pub async fn init(options: InitOptions, env: &dyn Environment) -> Result<Initialized, ServerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServerError::Io { path, source }
    };
    let data = absolute(&options.data).map_err(io(&options.data))?;
    // A staging directory left inside by an init that was killed (Drop never ran) is no node.
    let empty = match std::fs::read_dir(&data) {
        Ok(entries) => {
            let mut empty = true;
            for entry in entries {
                let entry = entry.map_err(io(&data))?;
                if entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
                    std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
                } else {
                    empty = false;
                }
            }
            empty
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
        Err(source) => return Err(ServerError::Io { path: data, source }),
    };
    if !empty {
        let what = if data.join(CONFIG_FILE).exists() { "already holds a node" } else { "is not empty" };
        return Err(ServerError::Config(format!(
            "{} {what}; init makes a new data directory (choose another, or move its files away)",
            data.display()
        )));
    }
    let secret = match (&options.secret, &options.secret_file) {
        (Some(_), Some(_)) => return Err(ServerError::Config("give --secret or --secret-file, not both".to_owned())),
        (Some(secret), None) => Some(secret.clone()),
        // `-` is standard input (read as is: re-opening /dev/stdin fails for a pipe from
        // another user, as under sudo).
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut secret = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut secret).map_err(io(path))?;
            Some(secret.trim().to_owned())
        }
        (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(io(path))?.trim().to_owned()),
        (None, None) => None,
    };

    let mut config = Config::default();
    config.node.domain = options.domain.clone();
    config.node.data_dir = data.clone();
    if let Some(http) = options.http {
        config.http.listen = http;
    }
    config.database.url = options.database.clone();
    if let Some(server) = &options.xmpp {
        config.xmpp = Some(XmppSection {
            component: options.component.clone().unwrap_or_else(|| format!("incidents.{}", options.domain)),
            server: server.clone(),
            secret_file: Some(data.join(SECRET_FILE)),
            secret: None,
            auto_approve: false,
            abuse_addresses: Vec::new(),
            forward_hops: 0,
        });
    } else if options.component.is_some() || secret.is_some() {
        return Err(ServerError::Config("--component and --secret need --xmpp HOST:PORT".to_owned()));
    }
    let token = options.admin_token.clone().unwrap_or_else(|| token_from_bytes(&env.random_bytes()));
    if token.len() < 16 {
        return Err(ServerError::Config("OSTRACON_ADMIN_TOKEN must be at least 16 characters".to_owned()));
    }

    // Made in the staging directory; the configuration written names the final paths, and
    // is checked as it reads in the staging directory.
    let staging = Staging::create(&data, env)?;
    let mut staged = config.clone();
    staged.node.data_dir = staging.path.clone();
    if let Some(xmpp) = &mut staged.xmpp {
        let secret = secret.unwrap_or_else(|| token_from_bytes(&env.random_bytes()));
        let path = staging.path.join(SECRET_FILE);
        keyfile::write_private(&path, &format!("{secret}\n"))?;
        xmpp.secret_file = Some(path);
    }
    let errors: Vec<_> =
        staged.check(None).into_iter().filter(|f| f.severity == crate::config::Severity::Error).collect();
    if !errors.is_empty() {
        return Err(ServerError::Refused(errors));
    }
    keyfile::load_or_create(&staging.path, env.now())?;
    let store = Store::open(&staged.database_url()).await?;
    store.put_token("admin", Scope::Admin, &hash_token(&token), env.now()).await?;
    store.close().await;
    keyfile::write_private(&staging.path.join(ADMIN_TOKEN_FILE), &format!("{token}\n"))?;
    let text = toml::to_string_pretty(&config).map_err(|e| ServerError::Config(e.to_string()))?;
    let header = "# Written by `ostracon init`. Check it with `ostracon config check --config THIS_FILE`.\n\n";
    keyfile::write_private(&staging.path.join(CONFIG_FILE), &format!("{header}{text}"))?;
    staging.commit(&data)?;
    Ok(Initialized { config_path: data.join(CONFIG_FILE), admin_token: token, config })
}

/// `path` made absolute against the working directory, its parent created and resolved.
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let path = std::path::absolute(path)?;
    let name = path.file_name().ok_or_else(|| std::io::Error::other("the data directory needs a name"))?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent)?;
    Ok(std::fs::canonicalize(parent)?.join(name))
}

/// How a staging directory inside an existing data directory is named.
const STAGING_PREFIX: &str = ".init-";

/// A hidden staging directory, removed unless committed.
struct Staging {
    path: PathBuf,
    /// Staged inside an existing empty target rather than beside a new one.
    inside: bool,
    committed: bool,
}

impl Staging {
    fn create(target: &Path, env: &dyn Environment) -> Result<Self, ServerError> {
        let suffix = hex::encode(&env.random_bytes()[..4]);
        let inside = target.is_dir();
        let path = if inside {
            target.join(format!("{STAGING_PREFIX}{suffix}"))
        } else {
            let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            target.with_file_name(format!(".{name}.init-{suffix}"))
        };
        let io = |source| ServerError::Io { path: path.clone(), source };
        std::fs::create_dir(&path).map_err(io)?;
        let staging = Self { path, inside, committed: false };
        std::fs::set_permissions(&staging.path, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| ServerError::Io { path: staging.path.clone(), source })?;
        Ok(staging)
    }

    /// Moves the staged node into `target`: one rename of the directory, or (staged inside)
    /// one link per file with the configuration last, each taken back if a later one fails.
    /// A link never replaces a file, so a second `init` racing for the same directory fails
    /// instead of mixing its files with ours. The target loses any access for others.
    fn commit(mut self, target: &Path) -> Result<(), ServerError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ServerError::Io { path, source }
        };
        if !self.inside {
            std::fs::rename(&self.path, target).map_err(io(target))?;
            self.committed = true;
            return Ok(());
        }
        let mut names: Vec<_> = std::fs::read_dir(&self.path)
            .map_err(io(&self.path))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io(&self.path))?;
        names.sort_by_key(|name| name == CONFIG_FILE);
        let mode = std::fs::metadata(target).map_err(io(target))?.permissions().mode();
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode & 0o750)).map_err(io(target))?;
        let mut linked = Vec::new();
        for name in &names {
            if let Err(source) = std::fs::hard_link(self.path.join(name), target.join(name)) {
                for back in linked.iter().rev() {
                    let _ = std::fs::remove_file(target.join(back));
                }
                return Err(ServerError::Io { path: target.join(name), source });
            }
            linked.push(name.clone());
        }
        // Committed: the staging directory only holds second links now.
        self.committed = true;
        let _ = std::fs::remove_dir_all(&self.path);
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
