//! Published list snapshots: one consistent read of a list, rendered in every format,
//! gzipped once, signed (detached Ed25519 over the exact body bytes) and tied to the signed
//! checkpoint of the log prefix it reflects.
//!
//! A snapshot and its checkpoint come from the same database read, so replaying log leaves
//! `0..checkpoint.size` yields exactly the snapshot's entries; `ostracon verify` checks that.

use std::io::{Read as _, Write as _};

use bytes::Bytes;

use flate2::Compression;
use flate2::write::GzEncoder;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ostracon_protocol::ids::{KeyId, Offender};
use ostracon_protocol::log::checkpoint::SignedCheckpoint;
use ostracon_protocol::time::Timestamp;
use serde::Serialize;
use sqlx::Row as _;

use crate::db::Dialect;
use crate::ledger::Ledger;
use futures_util::TryStreamExt as _;

use crate::model::{EntryRecord, ListAction, ListKind};
use crate::queries::{ENTRY_COLUMNS, entry_from_row};
use crate::{Result, StoreError};

/// A snapshot format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// One JSON document with metadata and entries.
    Json,
    /// One value per line (firewall sets, mod_firewall lists).
    Txt,
    /// One JSON object per entry per line, then a metadata line (Spamhaus DROP style).
    Ndjson,
    /// `value,kind,action,expires,first_seen,log_index` with a header row.
    Csv,
    /// An `nft -f` transaction filling the interval sets `inet ostracon blocked4`/`blocked6`
    /// (address lists only; contained and adjacent blocks merged).
    Nft,
    /// An `ipset restore` script that fills fresh sets and swaps them for `ostracon-v4`/`-v6`
    /// atomically (address lists only; contained and adjacent blocks merged).
    Ipset,
}

impl Format {
    /// Every format.
    pub const ALL: [Self; 6] = [Self::Json, Self::Txt, Self::Ndjson, Self::Csv, Self::Nft, Self::Ipset];

    /// Parses the `format=` parameter.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "json" => Some(Self::Json),
            "txt" => Some(Self::Txt),
            "ndjson" => Some(Self::Ndjson),
            "csv" => Some(Self::Csv),
            "nft" => Some(Self::Nft),
            "ipset" => Some(Self::Ipset),
            _ => None,
        }
    }

    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Txt => "txt",
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
            Self::Nft => "nft",
            Self::Ipset => "ipset",
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Txt => "text/plain; charset=utf-8",
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Nft | Self::Ipset => "text/plain; charset=utf-8",
        }
    }

    /// Whether the format carries address lists only (firewall sets).
    pub fn addresses_only(self) -> bool {
        matches!(self, Self::Nft | Self::Ipset)
    }
}

/// Which actions a snapshot carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Actions {
    /// Every entry, whatever its action.
    All,
    /// Only entries with this action.
    Only(ListAction),
}

impl Actions {
    /// What `format` carries unless the consumer asks (`action=`): plain text only `block`,
    /// since its consumers (mod_firewall, ejabberd's spam filter, firewall sets) block
    /// whatever they read and cannot see an action; the formats that name each entry's
    /// action carry every entry.
    pub fn default_for(format: Format) -> Self {
        match format {
            Format::Txt | Format::Nft | Format::Ipset => Self::Only(ListAction::Block),
            Format::Json | Format::Ndjson | Format::Csv => Self::All,
        }
    }

    /// Parses the `action=` parameter: `all`, `block`, `quarantine` or `observe`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "all" => Some(Self::All),
            other => other.parse().ok().map(Self::Only),
        }
    }

    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Only(action) => action.as_str(),
        }
    }

    fn only(self) -> Option<&'static str> {
        match self {
            Self::All => None,
            Self::Only(action) => Some(action.as_str()),
        }
    }
}

/// One rendered, signed snapshot.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Which list.
    pub list: ListKind,
    /// Which format.
    pub format: Format,
    /// Which actions it carries.
    pub actions: Actions,
    /// The body, gzipped: the only copy kept (a list's gzip is about a tenth of it), sent
    /// as it is to clients that accept gzip and inflated as it streams to the others.
    pub gzip: Bytes,
    /// The length of the exact body (what the signature covers).
    pub body_len: usize,
    /// Strong ETag (quoted), derived from the body's SHA-256.
    pub etag: String,
    /// Detached Ed25519 signature over `body`.
    pub signature: [u8; 64],
    /// The signing key's id.
    pub key_id: KeyId,
    /// The checkpoint of the log prefix this snapshot reflects.
    pub checkpoint: SignedCheckpoint,
    /// The change-feed cursor to continue from with `/v1/blocklist/changes?since=`.
    pub cursor: i64,
    /// Number of entries.
    pub entries: usize,
    /// When it was built.
    pub generated_at: Timestamp,
}

impl Snapshot {
    /// The exact body bytes (what the signature covers), inflated from the gzip.
    pub fn body(&self) -> Result<Vec<u8>> {
        let mut body = Vec::with_capacity(self.body_len);
        flate2::read::GzDecoder::new(&self.gzip[..])
            .read_to_end(&mut body)
            .map_err(|e| StoreError::Corrupt(format!("snapshot gzip: {e}")))?;
        Ok(body)
    }
}

/// The JSON form of one entry.
#[derive(Serialize)]
struct JsonEntry<'a> {
    value: String,
    kind: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<Timestamp>,
    first_seen: Timestamp,
    log_index: u64,
}

/// The JSON form of the metadata.
#[derive(Serialize)]
struct JsonMeta<'a> {
    list: &'a str,
    generated_at: Timestamp,
    cursor: i64,
    entries: usize,
    /// Set when the snapshot carries one action only (`action=`); absent, it carries all.
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    checkpoint: JsonCheckpoint<'a>,
}

#[derive(Serialize)]
struct JsonCheckpoint<'a> {
    origin: &'a str,
    size: u64,
    root: String,
}

fn json_entry(entry: &EntryRecord) -> JsonEntry<'_> {
    JsonEntry {
        value: entry.offender.to_string(),
        kind: entry.offender.kind(),
        action: entry.action.as_str(),
        expires: entry.expires_at,
        first_seen: entry.first_seen,
        log_index: entry.log_index,
    }
}

/// A snapshot body written entry by entry as the rows stream in, so a build never holds the
/// list as objects: only the body, and for the firewall formats the address blocks.
struct BodyWriter {
    format: Format,
    body: Vec<u8>,
    written: usize,
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

impl BodyWriter {
    fn new(format: Format) -> Self {
        let mut body = Vec::new();
        if format == Format::Csv {
            body.extend_from_slice(b"value,kind,action,expires,first_seen,log_index\n");
        }
        Self { format, body, written: 0, v4: Vec::new(), v6: Vec::new() }
    }

    fn push(&mut self, entry: &EntryRecord) -> Result<()> {
        let body = &mut self.body;
        match self.format {
            Format::Json => {
                if self.written > 0 {
                    body.push(b',');
                }
                serde_json::to_writer(&mut *body, &json_entry(entry)).map_err(json_error)?;
            }
            Format::Txt => {
                body.extend_from_slice(entry.offender.to_string().as_bytes());
                body.push(b'\n');
            }
            Format::Ndjson => {
                serde_json::to_writer(&mut *body, &json_entry(entry)).map_err(json_error)?;
                body.push(b'\n');
            }
            Format::Csv => {
                let expires = entry.expires_at.map(|t| t.to_string()).unwrap_or_default();
                let line = format!(
                    "{},{},{},{expires},{},{}\n",
                    csv_field(&entry.offender.to_string()),
                    entry.offender.kind(),
                    entry.action,
                    entry.first_seen,
                    entry.log_index
                );
                body.extend_from_slice(line.as_bytes());
            }
            Format::Nft | Format::Ipset => match &entry.offender {
                Offender::Ip(ip) => self.push_net(IpNet::from(*ip)),
                Offender::Cidr(cidr) => self.push_net(cidr.net()),
                _ => {}
            },
        }
        self.written += 1;
        Ok(())
    }

    fn push_net(&mut self, net: IpNet) {
        match net {
            IpNet::V4(net) => self.v4.push(net),
            IpNet::V6(net) => self.v6.push(net),
        }
    }

    /// Ends the body.
    fn finish(mut self, meta: &JsonMeta<'_>) -> Result<Vec<u8>> {
        match self.format {
            Format::Json => {
                // `{meta fields,"items":[...]}`: the document serde writes for the meta
                // flattened beside the items, with the meta (which counts them) put in front
                // once they are written.
                let meta = serde_json::to_vec(meta).map_err(json_error)?;
                let prefix = meta[..meta.len() - 1].iter().copied().chain(*b",\"items\":[");
                self.body.splice(0..0, prefix);
                self.body.extend_from_slice(b"]}\n");
            }
            Format::Ndjson => {
                #[derive(Serialize)]
                struct Trailer<'a> {
                    r#type: &'a str,
                    #[serde(flatten)]
                    meta: &'a JsonMeta<'a>,
                }
                serde_json::to_writer(&mut self.body, &Trailer { r#type: "metadata", meta }).map_err(json_error)?;
                self.body.push(b'\n');
            }
            Format::Nft | Format::Ipset => {
                // A firewall set needs no entry inside another, and nftables refuses
                // overlapping intervals: the fewest blocks covering the same addresses.
                let sets = (Ipv4Net::aggregate(&self.v4), Ipv6Net::aggregate(&self.v6));
                let render = if self.format == Format::Nft { render_nft } else { render_ipset };
                render(&mut self.body, &sets);
            }
            Format::Txt | Format::Csv => {}
        }
        Ok(self.body)
    }
}

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// One set element as nft and ipset write it: a bare address for a single host.
fn element(net: impl Into<IpNet>) -> String {
    let net = net.into();
    if net.prefix_len() == net.max_prefix_len() { net.addr().to_string() } else { net.to_string() }
}

fn render_nft(body: &mut Vec<u8>, (v4, v6): &(Vec<Ipv4Net>, Vec<Ipv6Net>)) {
    use std::fmt::Write as _;
    let mut text = String::with_capacity((v4.len() + v6.len()) * 20 + 512);
    // A table block adds what is missing and leaves what exists: loading this again is safe.
    // The rules that use the sets are the operator's (docs/firewalls.md), so they are not
    // added twice.
    text.push_str(
        "#!/usr/sbin/nft -f\n# Ostracon blocklist (addresses with action block); one transaction.\n\
         table inet ostracon {\n\
         \tset blocked4 { type ipv4_addr; flags interval; auto-merge; }\n\
         \tset blocked6 { type ipv6_addr; flags interval; auto-merge; }\n}\n\
         flush set inet ostracon blocked4\nflush set inet ostracon blocked6\n",
    );
    for (set, elements) in [
        ("blocked4", v4.iter().map(|n| element(*n)).collect::<Vec<_>>()),
        ("blocked6", v6.iter().map(|n| element(*n)).collect()),
    ] {
        if !elements.is_empty() {
            let _ = writeln!(text, "add element inet ostracon {set} {{ {} }}", elements.join(", "));
        }
    }
    body.extend_from_slice(text.as_bytes());
}

/// The smallest `maxelem` every load uses, so re-creating a live set with `-exist` always
/// matches the one a previous load swapped in.
const IPSET_MIN_MAXELEM: usize = 1 << 20;

fn render_ipset(body: &mut Vec<u8>, (v4, v6): &(Vec<Ipv4Net>, Vec<Ipv6Net>)) {
    use std::fmt::Write as _;
    let mut text = String::with_capacity((v4.len() + v6.len()) * 28 + 512);
    text.push_str("# Ostracon blocklist (addresses with action block): ipset restore < FILE\n");
    let families: [(&str, &str, Vec<String>); 2] = [
        ("ostracon-v4", "inet", v4.iter().map(|n| element(*n)).collect()),
        ("ostracon-v6", "inet6", v6.iter().map(|n| element(*n)).collect()),
    ];
    for (set, family, elements) in &families {
        let maxelem = elements.len().next_power_of_two().max(IPSET_MIN_MAXELEM);
        let fresh = format!("{set}-new");
        let _ = writeln!(text, "create {set} hash:net family {family} maxelem {maxelem} -exist");
        let _ = writeln!(text, "create {fresh} hash:net family {family} maxelem {maxelem} -exist");
        let _ = writeln!(text, "flush {fresh}");
        for element in elements {
            let _ = writeln!(text, "add {fresh} {element}");
        }
        // The swap is atomic: a packet meets the old set or the new, never a half-filled one.
        let _ = writeln!(text, "swap {fresh} {set}");
        let _ = writeln!(text, "destroy {fresh}");
    }
    body.extend_from_slice(text.as_bytes());
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break (RFC 7622
/// allows `,` and `"`-free punctuation in localparts), with quotes doubled. A value that a
/// spreadsheet would run as a formula (a leading `=`, `+`, `-`, `@`, tab or carriage return)
/// gets a leading `'` inside quotes, as OWASP advises: the listed value is the field without it.
fn csv_field(value: &str) -> std::borrow::Cow<'_, str> {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if !formula && !value.contains([',', '"', '\n', '\r']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let prefix = if formula { "'" } else { "" };
    std::borrow::Cow::Owned(format!("\"{prefix}{}\"", value.replace('"', "\"\"")))
}

fn gzip(body: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::default());
    encoder.write_all(body).and_then(|()| encoder.finish()).map_err(|e| StoreError::Corrupt(format!("gzip: {e}")))
}

impl Ledger {
    /// Builds a snapshot of `list` in `format` from one consistent read.
    pub async fn build_snapshot(
        &self,
        list: ListKind,
        format: Format,
        actions: Actions,
        now: Timestamp,
    ) -> Result<Snapshot> {
        let store = self.store();
        let mut tx = store.pool().begin().await?;
        if store.dialect() == Dialect::Postgres {
            // One snapshot of the database for every statement below.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        }
        let size: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_log").fetch_one(&mut *tx).await?.try_get("n")?;
        let cursor: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS s FROM list_changes")
            .fetch_one(&mut *tx)
            .await?
            .try_get("s")?;
        let kinds = list.entry_kinds();
        // Byte order on both dialects, so the same list has the same bytes, ETag and signature
        // whatever the PostgreSQL collation is.
        let collate = match store.dialect() {
            Dialect::Postgres => " COLLATE \"C\"",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE active = 1 AND (kind = $1 OR kind = $2) \
             AND ($3 IS NULL OR action = $3) ORDER BY kind{collate}, value{collate}"
        );
        // Rows are rendered as they stream in: the list is never held as rows or records.
        let mut writer = BodyWriter::new(format);
        {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(kinds[0])
                .bind(kinds.get(1).copied().unwrap_or(kinds[0]))
                .bind(actions.only())
                .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                writer.push(&entry_from_row(&row)?)?;
            }
        }
        tx.commit().await?;
        let entries = writer.written;
        let size = u64::try_from(size).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let cursor = cursor.max(store_pruned(self).await?);
        let checkpoint = self.checkpoint_for_size(size).await?;
        let meta = JsonMeta {
            list: list.as_str(),
            generated_at: now,
            cursor,
            entries,
            action: actions.only(),
            checkpoint: JsonCheckpoint {
                origin: &checkpoint.checkpoint().origin,
                size,
                root: base64_root(&checkpoint.checkpoint().root),
            },
        };
        let body = writer.finish(&meta)?;
        let key = self.signing_key();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&body);
        Ok(Snapshot {
            list,
            format,
            actions,
            gzip: Bytes::from(gzip(&body)?),
            body_len: body.len(),
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
            signature: key.sign(&body),
            key_id: key.key_id(),
            checkpoint,
            cursor,
            entries,
            generated_at: now,
        })
    }
}

async fn store_pruned(ledger: &Ledger) -> Result<i64> {
    use crate::traits::BlocklistStore as _;
    ledger.store().pruned_through().await
}

fn base64_root(root: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(root)
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("192.0.2.1"), "192.0.2.1");
        assert_eq!(csv_field("bot@spam.example"), "bot@spam.example");
        assert_eq!(csv_field("a,observe,,x@evil.example"), "\"a,observe,,x@evil.example\"");
        assert_eq!(csv_field("=hyperlink(1)@evil.example"), "\"'=hyperlink(1)@evil.example\"");
        assert_eq!(csv_field("-cmd@evil.example"), "\"'-cmd@evil.example\"");
        assert_eq!(csv_field("a\"b@evil.example"), "\"a\"\"b@evil.example\"");
    }
}
