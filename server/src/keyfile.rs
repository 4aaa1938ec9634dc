//! The node's signing key on disk: `DATA_DIR/signing.key`, mode 0600, holding the validity
//! start and the base64 seed. Created on first start from the OS's randomness.
//!
//! Rotation ([`plan_rotation`]) replaces it and appends the old public key, with the end of its
//! validity, to `DATA_DIR/retired-keys.json`; the node keeps publishing retired keys so
//! signatures made while they were current still verify. Retired private keys are not kept.
//!
//! A running node holds `DATA_DIR/node.lock` ([`hold`]): a second `serve` on the same data,
//! or a `key rotate` that the running node would not see, is refused while it does.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ostracon_protocol::keys::{NodeKey, PublishedKey};
use ostracon_protocol::time::Timestamp;

use crate::error::ServerError;

/// File name of the key inside the data directory.
pub const KEY_FILE: &str = "signing.key";

/// A loaded key and when it became valid.
pub struct LoadedKey {
    /// The signing key.
    pub key: NodeKey,
    /// Its validity start.
    pub valid_from: Timestamp,
}

/// Retired public keys, newest last.
pub const RETIRED_FILE: &str = "retired-keys.json";

/// The public keys this node used before its current one.
/// The lock a running node holds on its data directory, released when dropped (or when the
/// process dies, however it dies).
#[derive(Debug)]
pub struct DataLock(#[allow(dead_code)] fs::File);

/// Takes the data directory's lock for `what`, or says that a running node holds it.
pub fn hold(data_dir: &Path, what: &str) -> Result<DataLock, ServerError> {
    let path = data_dir.join("node.lock");
    match try_lock(&path)? {
        Some(file) => Ok(DataLock(file)),
        None => Err(ServerError::DataDirInUse { lock: path, what: what.to_owned() }),
    }
}

/// Takes an exclusive lock on the file at `path` (created if missing) for as long as the
/// returned file is open; `None` when another process holds it.
pub fn try_lock(path: &Path) -> Result<Option<fs::File>, ServerError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| ServerError::Io { path: path.to_path_buf(), source })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(source)) => Err(ServerError::Io { path: path.to_path_buf(), source }),
    }
}

pub fn load_retired(data_dir: &Path) -> Result<Vec<PublishedKey>, ServerError> {
    let path = data_dir.join(RETIRED_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).map_err(|_| ServerError::BadKeyFile { path, reason: "not a JSON list of keys" })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ServerError::Io { path, source }),
    }
}

/// A key rotation worked out but not yet written: the old key, its successor, and the
/// retired list before and after.
pub struct PlannedRotation {
    /// The key being retired (it signs the rotation announcement).
    pub old: LoadedKey,
    /// Its successor, valid from the rotation.
    pub new: LoadedKey,
    retired_before: Vec<PublishedKey>,
    retired_after: Vec<PublishedKey>,
}

/// Plans replacing the signing key with the key of `seed`, valid from `now`; the old public
/// key is retired at `now`. Nothing is written until [`PlannedRotation::write`].
pub fn plan_rotation(data_dir: &Path, now: Timestamp, seed: [u8; 32]) -> Result<PlannedRotation, ServerError> {
    let old = load_or_create(data_dir, now)?;
    let retired_before = load_retired(data_dir)?;
    let mut retiring = PublishedKey::new(old.key.public(), old.valid_from);
    retiring.valid_until = Some(now);
    let mut retired_after = retired_before.clone();
    retired_after.push(retiring);
    Ok(PlannedRotation {
        old,
        new: LoadedKey { key: NodeKey::from_seed(&seed), valid_from: now },
        retired_before,
        retired_after,
    })
}

impl PlannedRotation {
    /// Every key the node publishes after the rotation, the new one last.
    pub fn published(&self) -> Vec<PublishedKey> {
        let mut keys = self.retired_after.clone();
        keys.push(PublishedKey::new(self.new.key.public(), self.new.valid_from));
        keys
    }

    /// Writes the new key and the longer retired list, each file replaced atomically.
    pub fn write(&self, data_dir: &Path) -> Result<(), ServerError> {
        write_key_files(data_dir, &self.retired_after, &self.new)
    }

    /// Puts the old key and retired list back (the rotation could not be recorded).
    pub fn undo(&self, data_dir: &Path) -> Result<(), ServerError> {
        write_key_files(data_dir, &self.retired_before, &self.old)
    }
}

fn write_key_files(data_dir: &Path, retired: &[PublishedKey], key: &LoadedKey) -> Result<(), ServerError> {
    replace_private(&data_dir.join(RETIRED_FILE), &serde_json::to_string_pretty(retired).unwrap_or_default())?;
    replace_private(&data_dir.join(KEY_FILE), &format!("{} {}\n", key.valid_from, STANDARD.encode(key.key.seed())))
}

/// Atomically replaces a private (0600) file: write a temporary file, then rename it.
fn replace_private(path: &Path, contents: &str) -> Result<(), ServerError> {
    let temporary = path.with_extension("new");
    let _ = fs::remove_file(&temporary);
    write_private(&temporary, contents)?;
    fs::rename(&temporary, path).map_err(|source| ServerError::Io { path: path.to_path_buf(), source })
}

/// Writes a file only its owner can read (0600), refusing to overwrite an existing one.
pub fn write_private(path: &Path, contents: &str) -> Result<(), ServerError> {
    let io = |source| ServerError::Io { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Loads the key, or creates the directory (0700) and a new key (0600) if there is none.
pub fn load_or_create(data_dir: &Path, now: Timestamp) -> Result<LoadedKey, ServerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServerError::Io { path, source }
    };
    let path = data_dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            parse(&text).ok_or(ServerError::BadKeyFile { path, reason: "expected '<valid-from> <base64 seed>'" })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(data_dir).map_err(io(data_dir))?;
            fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).map_err(io(data_dir))?;
            let seed: [u8; 32] = rand::random();
            let mut file =
                fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io(&path))?;
            writeln!(file, "{now} {}", STANDARD.encode(seed)).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            Ok(LoadedKey { key: NodeKey::from_seed(&seed), valid_from: now })
        }
        Err(error) => Err(ServerError::Io { path, source: error }),
    }
}

fn parse(text: &str) -> Option<LoadedKey> {
    let (valid_from, seed) = text.trim().split_once(' ')?;
    let seed: [u8; 32] = STANDARD.decode(seed).ok()?.try_into().ok()?;
    Some(LoadedKey { key: NodeKey::from_seed(&seed), valid_from: Timestamp::parse_canonical(valid_from).ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_loads_the_same_key_with_private_permissions() {
        let dir = std::env::temp_dir().join(format!("ostracon-keyfile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let now = Timestamp::from_unix(1_800_000_000).unwrap();
        let created = load_or_create(&dir, now).unwrap();
        let loaded = load_or_create(&dir, now.plus_secs(60)).unwrap();
        assert_eq!(created.key.key_id(), loaded.key.key_id());
        assert_eq!(loaded.valid_from, now);
        let mode = fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::write(dir.join(KEY_FILE), "garbage").unwrap();
        assert!(matches!(load_or_create(&dir, now), Err(ServerError::BadKeyFile { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
