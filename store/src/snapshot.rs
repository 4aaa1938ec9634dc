//! Published list snapshots: one consistent read of a list, rendered in every format,
//! gzipped once, signed (detached Ed25519 over the exact body bytes) and tied to the signed
//! checkpoint of the log prefix it reflects.
//!
//! The read is of the ledger's memory, not the database: the listed rows, the tree size and
//! the change feed's position are copied out under one read lock, which every commit takes
//! to move them together, so replaying log leaves `0..checkpoint.size` yields exactly the
//! snapshot's entries (`ostracon verify` checks that). The lock is held for the copy only;
//! sorting and rendering run on a blocking thread, and the body streams from it in chunks to
//! a compressing and a signing thread.

use std::io::{Read as _, Write as _};
use std::sync::mpsc::{Receiver, sync_channel};

use bytes::Bytes;
use ostracon_protocol::keys::NodeKey;

use flate2::Compression;
use flate2::write::GzEncoder;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ostracon_protocol::ids::{KeyId, Offender};
use ostracon_protocol::log::checkpoint::SignedCheckpoint;
use ostracon_protocol::time::Timestamp;
use serde::Serialize;

use crate::ledger::Ledger;
use crate::model::{ListAction, ListKind, Listed};
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

    /// Whether a snapshot with these actions carries an entry with `action`.
    pub fn carry(self, action: ListAction) -> bool {
        match self {
            Self::All => true,
            Self::Only(only) => only == action,
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

/// Writes one entry as JSON, byte for byte what serde writes for
/// `{value, kind, action, expires (absent when none), first_seen, log_index}`, without
/// serde's per-field machinery or a formatted time's allocation: a million entries at a time.
fn write_json_entry(body: &mut Vec<u8>, kind: &str, value: &str, row: &Listed) -> Result<()> {
    body.extend_from_slice(b"{\"value\":");
    serde_json::to_writer(&mut *body, value).map_err(json_error)?;
    // Kinds and actions are fixed lowercase words: nothing to escape.
    for (name, text) in [("kind", kind), ("action", row.action.as_str())] {
        body.extend_from_slice(b",\"");
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b"\":\"");
        body.extend_from_slice(text.as_bytes());
        body.push(b'"');
    }
    if let Some(expires) = row.expires() {
        body.extend_from_slice(b",\"expires\":\"");
        write_time(body, expires);
        body.push(b'"');
    }
    body.extend_from_slice(b",\"first_seen\":\"");
    write_time(body, row.first_seen());
    body.extend_from_slice(b"\",\"log_index\":");
    body.extend_from_slice(itoa::Buffer::new().format(row.log_index).as_bytes());
    body.push(b'}');
    Ok(())
}

/// Writes one entry as a CSV line: `value,kind,action,expires,first_seen,log_index`.
fn write_csv_line(body: &mut Vec<u8>, kind: &str, value: &str, row: &Listed) {
    body.extend_from_slice(csv_field(value).as_bytes());
    for text in [kind, row.action.as_str()] {
        body.push(b',');
        body.extend_from_slice(text.as_bytes());
    }
    body.push(b',');
    if let Some(expires) = row.expires() {
        write_time(body, expires);
    }
    body.push(b',');
    write_time(body, row.first_seen());
    body.push(b',');
    body.extend_from_slice(itoa::Buffer::new().format(row.log_index).as_bytes());
    body.push(b'\n');
}

/// A time in its canonical text.
fn write_time(body: &mut Vec<u8>, at: Timestamp) {
    match at.canonical_bytes() {
        Some(text) => body.extend_from_slice(&text),
        None => body.extend_from_slice(at.to_string().as_bytes()),
    }
}

/// Bytes of body the renderer hands on at a time to the threads that compress and sign.
const CHUNK: usize = 1 << 20;

/// A snapshot body written entry by entry, in list order, handed on in chunks as it grows;
/// for the firewall formats, the address blocks, written at the end.
struct BodyWriter<'a> {
    format: Format,
    /// The chunk being written.
    body: Vec<u8>,
    written: usize,
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
    hand_on: &'a mut dyn FnMut(Bytes) -> Result<()>,
}

impl<'a> BodyWriter<'a> {
    /// A body begun with what comes before its entries: the CSV header, or the JSON
    /// document's metadata (which counts them) and the opening of its items.
    fn new(format: Format, meta: &JsonMeta<'_>, hand_on: &'a mut dyn FnMut(Bytes) -> Result<()>) -> Result<Self> {
        // An entry is far below the slack, so a chunk is not copied as it fills.
        let mut body = Vec::with_capacity(CHUNK + CHUNK / 16);
        match format {
            Format::Csv => body.extend_from_slice(b"value,kind,action,expires,first_seen,log_index\n"),
            Format::Json => {
                // `{meta fields,"items":[...]}`: the document serde writes for the meta
                // flattened beside the items.
                serde_json::to_writer(&mut body, meta).map_err(json_error)?;
                body.pop();
                body.extend_from_slice(b",\"items\":[");
            }
            Format::Txt | Format::Ndjson | Format::Nft | Format::Ipset => {}
        }
        Ok(Self { format, body, written: 0, v4: Vec::new(), v6: Vec::new(), hand_on })
    }

    /// Writes one entry; `value` is the offender as text.
    fn push(&mut self, offender: &Offender, value: &str, row: &Listed) -> Result<()> {
        let body = &mut self.body;
        match self.format {
            Format::Json => {
                if self.written > 0 {
                    body.push(b',');
                }
                write_json_entry(body, offender.kind(), value, row)?;
            }
            Format::Txt => {
                body.extend_from_slice(value.as_bytes());
                body.push(b'\n');
            }
            Format::Ndjson => {
                write_json_entry(body, offender.kind(), value, row)?;
                body.push(b'\n');
            }
            Format::Csv => write_csv_line(body, offender.kind(), value, row),
            Format::Nft | Format::Ipset => match offender {
                Offender::Ip(ip) => self.push_net(IpNet::from(*ip)),
                Offender::Cidr(cidr) => self.push_net(cidr.net()),
                _ => {}
            },
        }
        self.written += 1;
        if self.body.len() >= CHUNK {
            let full = std::mem::replace(&mut self.body, Vec::with_capacity(CHUNK + CHUNK / 16));
            (self.hand_on)(Bytes::from(full))?;
        }
        Ok(())
    }

    fn push_net(&mut self, net: IpNet) {
        match net {
            IpNet::V4(net) => self.v4.push(net),
            IpNet::V6(net) => self.v6.push(net),
        }
    }

    /// Ends the body and hands on its last chunk.
    fn finish(mut self, meta: &JsonMeta<'_>) -> Result<()> {
        match self.format {
            Format::Json => self.body.extend_from_slice(b"]}\n"),
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
        debug_assert_eq!(self.written, meta.entries, "the metadata counts what was written");
        (self.hand_on)(Bytes::from(self.body))
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

/// Compresses the chunks as they come.
fn gzip(chunks: Receiver<Bytes>) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(CHUNK), Compression::default());
    chunks
        .iter()
        .try_for_each(|chunk| encoder.write_all(&chunk))
        .and_then(|()| encoder.finish())
        .map_err(|e| StoreError::Corrupt(format!("gzip: {e}")))
}

/// Signs the chunks as they come, with the body's length and SHA-256 (for the ETag).
fn sign(key: &NodeKey, chunks: Receiver<Bytes>) -> Result<([u8; 64], [u8; 32], usize)> {
    use sha2::Digest as _;
    let (mut digest, mut len) = (sha2::Sha256::new(), 0);
    let signature = key.sign_chunks(chunks, |chunk| {
        digest.update(chunk);
        len += chunk.len();
    })?;
    Ok((signature, digest.finalize().into(), len))
}

impl Ledger {
    /// Builds a snapshot of `list` in `format` from one consistent read of memory.
    pub async fn build_snapshot(
        &self,
        list: ListKind,
        format: Format,
        actions: Actions,
        now: Timestamp,
    ) -> Result<Snapshot> {
        // Measured for the log only (`RUST_LOG=ostracon_store::snapshot=debug`): what an
        // operator sizing a node wants to see; nothing decides on it.
        let started = std::time::Instant::now();
        let listed = self.listed(list.entry_kinds(), |row| actions.carry(row.action));
        let cursor = listed.change_seq.max(store_pruned(self).await?);
        let checkpoint = self.checkpoint_for_size(listed.tree_size).await?;
        let key = self.signing_key();
        let snapshot = tokio::task::spawn_blocking(move || {
            render(listed.rows, list, format, actions, now, cursor, checkpoint, key)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("snapshot build: {e}")))??;
        tracing::debug!(
            list = list.as_str(),
            format = format.as_str(),
            entries = snapshot.entries,
            bytes = snapshot.body_len,
            gzip_bytes = snapshot.gzip.len(),
            millis = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        Ok(snapshot)
    }
}

/// The entries of a snapshot with where the log and the change feed stood when they were read.
pub(crate) struct ListedAt {
    /// Every entry the snapshot carries, in no order.
    pub rows: Vec<(Offender, Listed)>,
    /// The log's size.
    pub tree_size: u64,
    /// The change feed's last sequence number.
    pub change_seq: i64,
}

/// Sorts, renders, gzips and signs.
#[allow(clippy::too_many_arguments)] // One call site; a struct would only rename these.
fn render(
    rows: Vec<(Offender, Listed)>,
    list: ListKind,
    format: Format,
    actions: Actions,
    now: Timestamp,
    cursor: i64,
    checkpoint: SignedCheckpoint,
    key: NodeKey,
) -> Result<Snapshot> {
    let values = ListOrder::of(&rows)?;
    let meta = JsonMeta {
        list: list.as_str(),
        generated_at: now,
        cursor,
        entries: rows.len(),
        action: actions.only(),
        checkpoint: JsonCheckpoint {
            origin: &checkpoint.checkpoint().origin,
            size: checkpoint.checkpoint().size,
            root: base64_root(&checkpoint.checkpoint().root),
        },
    };
    // Rows to body to gzip and signature, streamed: this thread renders, one compresses and
    // one signs the chunks as they come, so the build takes about the longest of the three,
    // not their sum. The signer keeps the chunks for Ed25519's second pass; nothing else
    // holds the whole body.
    let (gzip, signed) = std::thread::scope(|scope| {
        let (to_gzip, for_gzip) = sync_channel::<Bytes>(CHUNKS_QUEUED);
        let (to_signer, for_signer) = sync_channel::<Bytes>(CHUNKS_QUEUED);
        let compressing = scope.spawn(move || gzip(for_gzip));
        let signing = scope.spawn(|| sign(&key, for_signer));
        let mut hand_on = move |chunk: Bytes| {
            let gone = || StoreError::Corrupt("snapshot build: a worker thread stopped".into());
            to_gzip.send(chunk.clone()).map_err(|_| gone())?;
            to_signer.send(chunk).map_err(|_| gone())
        };
        let rendered = render_body(&rows, &values, format, &meta, &mut hand_on);
        // Hanging up ends both workers' input.
        drop(hand_on);
        let (gzip, signed) = (joined(compressing.join()), joined(signing.join()));
        // A worker's own error comes before the renderer's report that it stopped.
        (gzip.and_then(|gzip| rendered.map(|()| gzip)), signed)
    });
    let (signature, digest, body_len) = signed?;
    let entries = meta.entries;
    Ok(Snapshot {
        list,
        format,
        actions,
        gzip: Bytes::from(gzip?),
        body_len,
        etag: format!("\"{}\"", hex::encode(&digest[..16])),
        signature,
        key_id: key.key_id(),
        checkpoint,
        cursor,
        entries,
        generated_at: now,
    })
}

/// A worker's result, or an error if it panicked.
fn joined<T>(result: std::thread::Result<Result<T>>) -> Result<T> {
    result.unwrap_or_else(|_| Err(StoreError::Corrupt("snapshot build: a worker thread panicked".into())))
}

/// Chunks waiting for a worker at most: a renderer ahead of them waits.
const CHUNKS_QUEUED: usize = 16;

/// Writes every row, in list order, and ends the body.
fn render_body(
    rows: &[(Offender, Listed)],
    values: &ListOrder,
    format: Format,
    meta: &JsonMeta<'_>,
    hand_on: &mut dyn FnMut(Bytes) -> Result<()>,
) -> Result<()> {
    let mut writer = BodyWriter::new(format, meta, hand_on)?;
    for (position, value) in values.in_order() {
        if let Some((offender, row)) = rows.get(position) {
            writer.push(offender, value, row)?;
        }
    }
    writer.finish(meta)
}

/// The order of a published list: by kind, then by value, both compared as bytes, so the same
/// list has the same bytes, ETag and signature on every node and backend.
///
/// Each half of the rows is written out and sorted on a thread of its own, and the halves
/// are merged as the body is rendered.
struct ListOrder {
    halves: [SortedValues; 2],
}

impl ListOrder {
    fn of(rows: &[(Offender, Listed)]) -> Result<Self> {
        let (first, second) = rows.split_at(rows.len() / 2);
        std::thread::scope(|scope| {
            let sorting = scope.spawn(|| SortedValues::of(second, first.len()));
            let first = SortedValues::of(first, 0);
            let second =
                sorting.join().map_err(|_| StoreError::Corrupt("snapshot build: a sorting thread panicked".into()))?;
            Ok(Self { halves: [first, second] })
        })
    }

    /// Each row's position with its value, in list order.
    fn in_order(&self) -> impl Iterator<Item = (usize, &str)> {
        let [first, second] = &self.halves;
        let (mut first, mut second) = (first.keys.iter().peekable(), second.keys.iter().peekable());
        std::iter::from_fn(move || {
            let take_first = match (first.peek(), second.peek()) {
                (Some(a), Some(b)) => SortedValues::order(&self.halves[0], a, &self.halves[1], b).is_le(),
                (a, _) => a.is_some(),
            };
            if take_first {
                first.next().map(|key| self.halves[0].value(key))
            } else {
                second.next().map(|key| self.halves[1].value(key))
            }
        })
    }
}

/// `(kind, prefix, start, end, position in the rows)` of one value.
type SortKey = (&'static str, u128, usize, usize, usize);

/// The values of some rows, written once into one buffer, and their keys, sorted. Sorting
/// compares a 16-byte big-endian prefix of each (a whole IPv4 address) and reads the text
/// only on a tie, so the sort does not chase a pointer per comparison. No value holds a NUL
/// byte (PRECIS refuses control characters), so the zero padding of a short value sorts it
/// before a longer one it begins.
struct SortedValues {
    text: String,
    keys: Vec<SortKey>,
}

impl SortedValues {
    /// `rows`, the first of which is row `offset` of the list.
    fn of(rows: &[(Offender, Listed)], offset: usize) -> Self {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(rows.len() * 16);
        let mut keys = Vec::with_capacity(rows.len());
        for (position, (offender, _)) in rows.iter().enumerate() {
            let start = text.len();
            let _ = write!(text, "{offender}");
            let value = text.get(start..).unwrap_or_default().as_bytes();
            let mut prefix = [0_u8; 16];
            let shared = value.len().min(16);
            prefix[..shared].copy_from_slice(&value[..shared]);
            keys.push((offender.kind(), u128::from_be_bytes(prefix), start, text.len(), offset + position));
        }
        let mut sorted = Self { text, keys: Vec::new() };
        keys.sort_unstable_by(|a, b| Self::order(&sorted, a, &sorted, b));
        sorted.keys = keys;
        sorted
    }

    /// How key `a` of `left` and key `b` of `right` are ordered.
    fn order(left: &Self, a: &SortKey, right: &Self, b: &SortKey) -> std::cmp::Ordering {
        (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| left.text.get(a.2..a.3).cmp(&right.text.get(b.2..b.3)))
    }

    /// The row's position and its value.
    fn value(&self, &(_, _, start, end, position): &SortKey) -> (usize, &str) {
        (position, self.text.get(start..end).unwrap_or_default())
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
    use std::io::Read as _;

    use ostracon_protocol::ids::Offender;
    use ostracon_protocol::keys::NodeKey;
    use ostracon_protocol::log::checkpoint::Checkpoint;
    use ostracon_protocol::time::Timestamp;
    use serde::Serialize;

    use super::{Actions, CHUNK, Format, csv_field, render, write_csv_line, write_json_entry};
    use crate::model::{EntrySource, ListAction, ListKind, Listed};

    /// What serde writes for an entry: the form the hand-written renderer must equal.
    #[derive(Serialize)]
    struct SerdeEntry<'a> {
        value: &'a str,
        kind: &'a str,
        action: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires: Option<Timestamp>,
        first_seen: Timestamp,
        log_index: u64,
    }

    fn row(n: u64, expires: Option<i64>) -> Listed {
        let at = |secs| Timestamp::from_unix(secs).unwrap();
        let action = [ListAction::Block, ListAction::Quarantine, ListAction::Observe][n as usize % 3];
        Listed::new(n as i64, action, EntrySource::Incidents, at(1_700_000_000 + n as i64), expires.map(at), 1, n)
    }

    #[test]
    fn entries_are_written_as_serde_and_the_old_csv_writer_wrote_them() {
        let cases = [
            ("ip", "192.0.2.1", row(1, None)),
            ("jid", "o'hara\\x@evil.example", row(2, Some(4_102_444_800))),
            ("jid", "=cmd,x@evil.example", row(3, Some(0))),
            ("domain", "evil.example", row(u64::MAX, Some(253_402_300_799))),
        ];
        for (kind, value, row) in cases {
            let mut json = Vec::new();
            write_json_entry(&mut json, kind, value, &row).unwrap();
            let serde = SerdeEntry {
                value,
                kind,
                action: row.action.as_str(),
                expires: row.expires(),
                first_seen: row.first_seen(),
                log_index: row.log_index,
            };
            assert_eq!(String::from_utf8(json).unwrap(), serde_json::to_string(&serde).unwrap());
            let mut csv = Vec::new();
            write_csv_line(&mut csv, kind, value, &row);
            let expires = row.expires().map(|t| t.to_string()).unwrap_or_default();
            let old = format!(
                "{},{kind},{},{expires},{},{}\n",
                csv_field(value),
                row.action,
                row.first_seen(),
                row.log_index
            );
            assert_eq!(String::from_utf8(csv).unwrap(), old);
        }
    }

    #[test]
    fn a_body_of_many_chunks_is_signed_and_compressed_whole() {
        let key = NodeKey::from_seed(&[3; 32]);
        let checkpoint =
            Checkpoint::new("test.example/log", 7, [1; 32]).sign("test.example", key.signing_key()).unwrap();
        // In no order: the halves sorted apart must interleave.
        let rows: Vec<(Offender, Listed)> = (0..20_000u64)
            .map(|n| n * 7_919 % 20_000)
            .map(|n| {
                (Offender::parse(&format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255)).unwrap(), row(n, None))
            })
            .collect();
        let now = Timestamp::from_unix(1_800_000_000).unwrap();
        for format in [Format::Json, Format::Txt] {
            let snapshot =
                render(rows.clone(), ListKind::Ip, format, Actions::All, now, 5, checkpoint.clone(), key.clone())
                    .unwrap();
            let mut body = Vec::new();
            flate2::read::GzDecoder::new(&snapshot.gzip[..]).read_to_end(&mut body).unwrap();
            assert!(format == Format::Txt || body.len() > 2 * CHUNK, "{format:?}: {} bytes", body.len());
            assert_eq!((body.len(), snapshot.entries), (snapshot.body_len, rows.len()));
            assert_eq!(snapshot.signature, key.sign(&body), "{format:?}");
            let digest = <sha2::Sha256 as sha2::Digest>::digest(&body);
            assert_eq!(snapshot.etag, format!("\"{}\"", hex::encode(&digest[..16])));
            let text = String::from_utf8(body).unwrap();
            if format == Format::Txt {
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines.len(), rows.len());
                assert!(lines.windows(2).all(|pair| pair[0].as_bytes() < pair[1].as_bytes()), "sorted as bytes");
            }
            if format == Format::Json {
                let document: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(document["entries"], 20_000);
                assert_eq!(document["items"].as_array().unwrap().len(), 20_000);
            }
        }
    }

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
