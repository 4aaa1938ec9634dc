//! `ostracon export`: one list written to a file, for consumers that read files rather than
//! HTTP (ejabberd's mod_spam_filter `spam_jids_file`, a firewall loader run from a timer).
//!
//! The file is the node's plain-text list: one value per line, each line LF-terminated, no
//! comments and no blank lines (a blank line or a `#` makes mod_spam_filter refuse the whole
//! file), and `block` entries only unless asked. It is replaced atomically (a temporary file
//! beside it, then a rename), and only when its content changes, so a cron job or a systemd
//! path unit reloads the consumer only then.

use std::path::{Path, PathBuf};

use reqwest::Method;

use crate::client::{ApiClient, encode};
use crate::error::ServerError;

/// What an export did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    /// Entries in the file.
    pub entries: usize,
    /// Whether the file was (re)written; false when it already held exactly this list.
    pub changed: bool,
}

/// Writes list `kind` (`ip`, `jid`, `domain`) with entries of `action` (`block`, ..., `all`)
/// from the node at `client` to `output`.
pub async fn export(client: &ApiClient, kind: &str, action: &str, output: &Path) -> Result<Exported, ServerError> {
    let path = format!("/v1/blocklist?kind={}&format=txt&action={}", encode(kind), encode(action));
    let answer = client.raw(Method::GET, &path, None).await?;
    if !answer.status.is_success() {
        return Err(ServerError::Client(format!(
            "GET {path} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )));
    }
    let text = String::from_utf8(answer.body)
        .map_err(|_| ServerError::Client(format!("GET {path}: the list is not UTF-8")))?;
    let entries = check_lines(&text).map_err(|why| ServerError::Client(format!("GET {path}: {why}")))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServerError::Io { path, source }
    };
    match std::fs::read(output) {
        Ok(current) if current == text.as_bytes() => return Ok(Exported { entries, changed: false }),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ServerError::Io { path: output.to_path_buf(), source }),
    }
    let temporary = temporary_beside(output);
    std::fs::write(&temporary, text.as_bytes()).map_err(io(&temporary))?;
    if let Err(error) = std::fs::rename(&temporary, output) {
        let _ = std::fs::remove_file(&temporary);
        return Err(ServerError::Io { path: output.to_path_buf(), source: error });
    }
    Ok(Exported { entries, changed: true })
}

/// Counts the lines, refusing what a file consumer would choke on.
fn check_lines(text: &str) -> Result<usize, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line is not LF-terminated".to_owned());
    }
    if text.contains('\r') {
        return Err("a line ends in CR LF".to_owned());
    }
    let mut entries = 0;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            return Err(format!("line {} is blank or a comment", number + 1));
        }
        entries += 1;
    }
    Ok(entries)
}

fn temporary_beside(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    output.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_file_consumer_chokes_on_is_refused() {
        assert_eq!(check_lines(""), Ok(0));
        assert_eq!(check_lines("a@spam.example\nb@spam.example\n"), Ok(2));
        for bad in ["a@spam.example", "a@spam.example\n\n", "# list\na@spam.example\n", "a@spam.example\r\n"] {
            assert!(check_lines(bad).is_err(), "{bad:?}");
        }
    }
}
