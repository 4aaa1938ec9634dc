//! The in-memory blocklist index: answers public lookups (an IP, a CIDR block, a JID, a domain,
//! a hash prefix) without touching the database.
//!
//! The index owns no truth. Its owner applies every committed list change with
//! [`BlocklistIndex::insert`] and [`BlocklistIndex::remove`] after the transaction commits, and
//! rebuilds it from the store at start-up.
//!
//! Each entry carries a row of its owner's choosing (an entry id, or what the ledger keeps to
//! publish and explain the entry). Rows sit once in a table of their own, and the maps hold a
//! 4-byte slot into it, so a large row does not widen every hash bucket.
//!
//! The work per lookup does not depend on the number of entries:
//!
//! - single addresses sit in hash maps keyed by the address as an integer (`u32`, `u128`);
//! - CIDR blocks sit in one hash map per prefix length, keyed by the masked network, and a
//!   bitset of the lengths in use means an address lookup probes only those lengths
//!   (at most 33 for IPv4 and 129 for IPv6, whatever the number of entries);
//! - JIDs and domains are keyed by their SHA-256 RTBL item id, which is also the order of the
//!   B-tree that answers hash-prefix queries, so each name is stored once. A prefix query is
//!   the one logarithmic search here, plus the cost of its answer.
//!
//! `benches/index.rs` measures this from 1k to 1M entries. Wall-clock time still rises
//! somewhat with size, because a large index no longer fits in the CPU caches.
//!
//! The maps use std's randomly keyed SipHash: lookups come from untrusted clients, and a fixed
//! hasher would let them aim collisions at one bucket.
//!
//! Keys are canonical, as in [`ostracon_protocol::ids`]: an IPv4-mapped IPv6 address is its IPv4
//! address, and a block inside `::ffff:0:0/96` is the matching IPv4 block. Lookups return
//! offenders in that canonical form. Other IPv6 blocks (`::/0` included) cover IPv6 addresses
//! only, as [`Cidr::contains`] does.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::iter;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use ostracon_protocol::ids::{BareJid, Cidr, Domain, Offender, canonical_ip};
use sha2::{Digest as _, Sha256};

/// The store's id for one blocklist entry.
pub type EntryId = i64;

/// Shortest hash prefix, in hex digits, that [`BlocklistIndex::hashes_with_prefix`] accepts.
///
/// Four digits split the hash space 65 536 ways, so one answer names a handful of entries
/// even for a large list, and the client's own JID hides among many others.
pub const MIN_HASH_PREFIX_DIGITS: usize = 4;

/// Longest hash prefix, in hex digits, that [`BlocklistIndex::hashes_with_prefix`] accepts.
pub const MAX_HASH_PREFIX_DIGITS: usize = 8;

/// Where an entry's row sits in [`Rows`]: the maps hold these rather than rows.
type Slot = u32;

/// Every listed offender with its row, arranged so lookups do no more work as the list grows.
///
/// One entry per distinct offender: inserting an offender again replaces its row.
#[derive(Clone)]
pub struct BlocklistIndex<R = EntryId> {
    /// IPv4 addresses and blocks.
    v4: Family<u32>,
    /// IPv6 addresses and blocks (IPv4-mapped ones live in `v4`).
    v6: Family<u128>,
    /// JIDs and domains.
    names: Names,
    /// Each entry's row, by slot.
    rows: Rows<R>,
    /// Entries across all maps, kept as a counter so `len` needs no walk over 162 prefix maps.
    len: usize,
    /// Entries of each kind, in [`KINDS`] order.
    by_kind: [usize; 4],
}

/// The kinds of entry, in the order [`BlocklistIndex::sizes`] gives them.
pub const KINDS: [&str; 4] = ["ip", "cidr", "jid", "domain"];

fn kind_slot(offender: &Offender) -> usize {
    match offender {
        Offender::Ip(_) => 0,
        Offender::Cidr(_) => 1,
        Offender::Jid(_) => 2,
        Offender::Domain(_) => 3,
    }
}

impl<R> Default for BlocklistIndex<R> {
    fn default() -> Self {
        Self {
            v4: Family::default(),
            v6: Family::default(),
            names: Names::default(),
            rows: Rows { rows: Vec::new(), free: Vec::new() },
            len: 0,
            by_kind: [0; 4],
        }
    }
}

impl<R: Clone> BlocklistIndex<R> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the entry for this offender, or replaces its row if it is listed already; returns
    /// whether it was new.
    ///
    /// The row table holds at most `u32::MAX` entries (hundreds of gigabytes of rows); past
    /// that a new entry is refused with an error logged, and `false` returned.
    pub fn insert(&mut self, offender: &Offender, row: R) -> bool {
        let key = Key::of(offender);
        if let Some(slot) = self.slot(&key) {
            self.rows.set(slot, row);
            return false;
        }
        let Some(slot) = self.rows.add(row) else {
            tracing::error!(%offender, "the lookup index is full; the entry is not indexed");
            return false;
        };
        match key {
            Key::V4Host(addr) => self.v4.hosts.insert(addr, slot),
            Key::V6Host(addr) => self.v6.hosts.insert(addr, slot),
            Key::V4Net(addr, len) => self.v4.insert_net(addr, len, slot),
            Key::V6Net(addr, len) => self.v6.insert_net(addr, len, slot),
            Key::Name(key) => self.names.insert(key, offender, slot),
        };
        self.len += 1;
        self.by_kind[kind_slot(offender)] += 1;
        true
    }

    /// Removes the entry for this offender; returns whether it was present.
    pub fn remove(&mut self, offender: &Offender) -> bool {
        let removed = match Key::of(offender) {
            Key::V4Host(addr) => self.v4.hosts.remove(&addr),
            Key::V6Host(addr) => self.v6.hosts.remove(&addr),
            Key::V4Net(addr, len) => self.v4.remove_net(addr, len),
            Key::V6Net(addr, len) => self.v6.remove_net(addr, len),
            Key::Name(key) => self.names.remove(key),
        };
        let Some(slot) = removed else { return false };
        self.rows.release(slot);
        self.len -= 1;
        self.by_kind[kind_slot(offender)] -= 1;
        true
    }

    /// The slot of exactly this key, if it is listed.
    fn slot(&self, key: &Key) -> Option<Slot> {
        match *key {
            Key::V4Host(addr) => self.v4.hosts.get(&addr).copied(),
            Key::V6Host(addr) => self.v6.hosts.get(&addr).copied(),
            Key::V4Net(addr, len) => self.v4.net(addr, len),
            Key::V6Net(addr, len) => self.v6.net(addr, len),
            Key::Name(key) => self.names.get(key),
        }
    }

    /// The row of exactly this offender (no covering block or domain), if it is listed.
    pub fn row(&self, offender: &Offender) -> Option<R> {
        self.slot(&Key::of(offender)).and_then(|slot| self.rows.get(slot).cloned())
    }

    /// The row of exactly this offender, to change in place, if it is listed.
    pub fn row_mut(&mut self, offender: &Offender) -> Option<&mut R> {
        let slot = self.slot(&Key::of(offender))?;
        self.rows.rows.get_mut(usize::try_from(slot).ok()?)
    }

    /// Calls `change` on every row (and on the stale rows of free slots, which nothing reads).
    pub fn for_each_row_mut(&mut self, change: impl FnMut(&mut R)) {
        self.rows.rows.iter_mut().for_each(change);
    }

    /// Calls `visit` with every entry of `kind` (one of [`KINDS`]) and its row, in no
    /// particular order; an unknown kind visits nothing.
    pub fn for_each_of_kind(&self, kind: &str, mut visit: impl FnMut(Offender, &R)) {
        let mut visit_slot = |offender: Offender, slot: Slot| {
            if let Some(row) = self.rows.get(slot) {
                visit(offender, row);
            }
        };
        match kind {
            "ip" => {
                self.v4.hosts.iter().for_each(|(addr, slot)| visit_slot(Offender::Ip(addr.ip()), *slot));
                self.v6.hosts.iter().for_each(|(addr, slot)| visit_slot(Offender::Ip(addr.ip()), *slot));
            }
            "cidr" => {
                self.v4.for_each_net(&mut visit_slot);
                self.v6.for_each_net(&mut visit_slot);
            }
            "jid" | "domain" => {
                let wanted = if kind == "jid" { NameKind::Jid } else { NameKind::Domain };
                for (key, (offender, slot)) in &self.names.by_digest {
                    if key.kind == wanted {
                        visit_slot(offender.clone(), *slot);
                    }
                }
            }
            _ => {}
        }
    }

    /// The number of entries of each kind, as `(kind, count)` in [`KINDS`] order.
    pub fn sizes(&self) -> [(&'static str, usize); 4] {
        std::array::from_fn(|slot| (KINDS[slot], self.by_kind[slot]))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry for exactly `ip` (if any), then every CIDR entry covering it, most specific first.
    ///
    /// An IPv4-mapped IPv6 address is looked up as its IPv4 address.
    pub fn lookup_ip(&self, ip: IpAddr) -> Vec<(Offender, R)> {
        let mut found = Vec::new();
        match canonical_ip(ip) {
            IpAddr::V4(v4) => self.v4.collect(v4.to_bits(), u32::WIDTH, &mut found),
            IpAddr::V6(v6) => self.v6.collect(v6.to_bits(), u128::WIDTH, &mut found),
        }
        self.rows.resolve(found)
    }

    /// The entries for exactly this block, then every CIDR entry containing it, most specific first.
    ///
    /// A single-address block (`/32`, `/128`) also finds the entry for that address, first,
    /// since both name the same set of addresses.
    pub fn lookup_cidr(&self, cidr: &Cidr) -> Vec<(Offender, R)> {
        let mut found = Vec::new();
        match canonical_net(cidr.net()) {
            Net::V4(addr, len) => self.v4.collect(addr, len, &mut found),
            Net::V6(addr, len) => self.v6.collect(addr, len, &mut found),
        }
        self.rows.resolve(found)
    }

    /// The JID's own entry, then its domain's entry: a listed domain covers every JID on it.
    ///
    /// Only the JID's exact domain counts, as in the xmppbl.org RTBL convention that Prosody and
    /// ejabberd follow; a listed parent domain does not cover its subdomains here.
    pub fn lookup_jid(&self, jid: &BareJid) -> Vec<(Offender, R)> {
        let mut found = Vec::new();
        // Equal digests mean equal names, so the caller's values stand in for the stored ones.
        if let Some(slot) = self.names.get(NameKey::jid(jid)) {
            found.push((Offender::Jid(jid.clone()), slot));
        }
        if let Some(slot) = self.names.get(NameKey::domain(jid.domain())) {
            found.push((Offender::Domain(jid.domain().clone()), slot));
        }
        self.rows.resolve(found)
    }

    /// The domain's own entry, if it is listed.
    pub fn lookup_domain(&self, domain: &Domain) -> Vec<(Offender, R)> {
        let found = self.names.get(NameKey::domain(domain)).map(|slot| (Offender::Domain(domain.clone()), slot));
        self.rows.resolve(found.into_iter().collect())
    }

    /// Every listed JID and domain whose RTBL item id starts with `prefix`, as
    /// `(item id, offender, row)`, sorted by item id.
    ///
    /// A client can check a JID while telling the server only the first 16 to 32 bits of its
    /// hash (which still lets a server that suspects particular JIDs test them).
    /// `prefix` must be 4 to 8 lowercase hex digits; anything else returns `None`.
    /// A JID and a domain with the same item id (a domain JID and that domain) are both
    /// returned, the JID first.
    pub fn hashes_with_prefix(&self, prefix: &str) -> Option<Vec<(String, Offender, R)>> {
        let prefix = HashPrefix::parse(prefix)?;
        let found = self.names.with_prefix(&prefix);
        Some(
            found
                .into_iter()
                .filter_map(|(id, offender, slot)| Some((id, offender, self.rows.get(slot)?.clone())))
                .collect(),
        )
    }

    /// An estimate of the heap memory the index holds, in bytes, from map capacities.
    ///
    /// It counts hash-table buckets and control bytes, B-tree nodes at a typical fill, and
    /// the name strings rounded to glibc's chunk sizes; allocator slack beyond that is not
    /// counted. Benchmarks divide it by [`len`](Self::len).
    pub fn approx_heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes() + self.names.heap_bytes() + self.rows.heap_bytes()
    }
}

/// The rows, by slot; a removed entry's slot is reused by the next insert.
#[derive(Clone)]
struct Rows<R> {
    rows: Vec<R>,
    /// Slots no entry uses; what they hold is stale and never read.
    free: Vec<Slot>,
}

impl<R: Clone> Rows<R> {
    /// Stores a new row; `None` once every slot is taken.
    fn add(&mut self, row: R) -> Option<Slot> {
        if let Some(slot) = self.free.pop() {
            self.set(slot, row);
            return Some(slot);
        }
        let slot = Slot::try_from(self.rows.len()).ok()?;
        self.rows.push(row);
        Some(slot)
    }

    fn get(&self, slot: Slot) -> Option<&R> {
        self.rows.get(usize::try_from(slot).ok()?)
    }

    fn set(&mut self, slot: Slot, row: R) {
        if let Some(kept) = usize::try_from(slot).ok().and_then(|slot| self.rows.get_mut(slot)) {
            *kept = row;
        }
    }

    fn release(&mut self, slot: Slot) {
        self.free.push(slot);
    }

    /// The found slots' rows.
    fn resolve(&self, found: Vec<(Offender, Slot)>) -> Vec<(Offender, R)> {
        found.into_iter().filter_map(|(offender, slot)| Some((offender, self.get(slot)?.clone()))).collect()
    }

    fn heap_bytes(&self) -> usize {
        malloc_bytes(self.rows.capacity() * size_of::<R>()) + malloc_bytes(self.free.capacity() * size_of::<Slot>())
    }
}

impl<R> fmt::Debug for BlocklistIndex<R> {
    /// Counts only: the entries themselves can number in the millions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlocklistIndex")
            .field("len", &self.len)
            .field("ipv4_prefix_lengths", &self.v4.lengths.longest_first().collect::<Vec<_>>())
            .field("ipv6_prefix_lengths", &self.v6.lengths.longest_first().collect::<Vec<_>>())
            .field("names", &self.names.by_digest.len())
            .finish()
    }
}

/// Where an offender lives in the index.
enum Key {
    V4Host(u32),
    V6Host(u128),
    V4Net(u32, u8),
    V6Net(u128, u8),
    Name(NameKey),
}

impl Key {
    /// The canonical key of an offender.
    fn of(offender: &Offender) -> Self {
        match offender {
            Offender::Ip(ip) => match canonical_ip(*ip) {
                IpAddr::V4(v4) => Self::V4Host(v4.to_bits()),
                IpAddr::V6(v6) => Self::V6Host(v6.to_bits()),
            },
            Offender::Cidr(cidr) => match canonical_net(cidr.net()) {
                Net::V4(addr, len) => Self::V4Net(addr, len),
                Net::V6(addr, len) => Self::V6Net(addr, len),
            },
            Offender::Jid(jid) => Self::Name(NameKey::jid(jid)),
            Offender::Domain(domain) => Self::Name(NameKey::domain(domain)),
        }
    }
}

/// A block as its masked network address and prefix length.
enum Net {
    V4(u32, u8),
    V6(u128, u8),
}

/// A block in integer form; a block inside `::ffff:0:0/96` becomes the IPv4 block it maps.
fn canonical_net(net: IpNet) -> Net {
    match net {
        IpNet::V4(v4) => Net::V4(v4.network().to_bits(), v4.prefix_len()),
        IpNet::V6(v6) => {
            let len = v6.prefix_len();
            // From /96 on, every address in the block shares the network's first 96 bits,
            // so the block is all mapped addresses or none.
            match v6.network().to_ipv4_mapped() {
                Some(v4) if len >= 96 => Net::V4(v4.to_bits(), len - 96),
                _ => Net::V6(v6.network().to_bits(), len),
            }
        }
    }
}

/// An address family's address as an integer, so IPv4 and IPv6 share one implementation.
trait AddressBits: Copy + Eq + Hash {
    /// Bits in an address: 32 or 128.
    const WIDTH: u8;

    /// Keeps the first `len` bits and clears the rest.
    fn masked(self, len: u8) -> Self;

    /// The address as an `IpAddr`.
    fn ip(self) -> IpAddr;
}

impl AddressBits for u32 {
    const WIDTH: u8 = 32;

    fn masked(self, len: u8) -> Self {
        // Shifting by the full width is `None` (a /0 keeps nothing); a length past the width keeps everything.
        self & Self::MAX.checked_shl(Self::from(Self::WIDTH.saturating_sub(len))).unwrap_or(0)
    }

    fn ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from_bits(self))
    }
}

impl AddressBits for u128 {
    const WIDTH: u8 = 128;

    fn masked(self, len: u8) -> Self {
        self & Self::MAX.checked_shl(u32::from(Self::WIDTH.saturating_sub(len))).unwrap_or(0)
    }

    fn ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from_bits(self))
    }
}

/// One address family's single addresses and blocks.
#[derive(Clone)]
struct Family<A> {
    /// Single addresses.
    hosts: HashMap<A, Slot>,
    /// Blocks, one map per prefix length (the index), keyed by the masked network address.
    nets: Box<[HashMap<A, Slot>]>,
    /// The lengths whose map is not empty, so lookups skip the others.
    lengths: PrefixLengths,
}

impl<A: AddressBits> Default for Family<A> {
    fn default() -> Self {
        Self {
            hosts: HashMap::new(),
            // Empty std maps do not allocate, so the unused lengths cost only their headers.
            nets: (0..=A::WIDTH).map(|_| HashMap::new()).collect(),
            lengths: PrefixLengths::default(),
        }
    }
}

impl<A: AddressBits> Family<A> {
    /// The slot of exactly the block `addr/len`.
    fn net(&self, addr: A, len: u8) -> Option<Slot> {
        self.nets.get(usize::from(len))?.get(&addr.masked(len)).copied()
    }

    /// Adds a block.
    ///
    /// A length past the family's width cannot come from an `IpNet`, and is ignored.
    fn insert_net(&mut self, addr: A, len: u8, slot: Slot) -> Option<Slot> {
        let nets = self.nets.get_mut(usize::from(len))?;
        self.lengths.insert(len);
        nets.insert(addr.masked(len), slot)
    }

    fn remove_net(&mut self, addr: A, len: u8) -> Option<Slot> {
        let nets = self.nets.get_mut(usize::from(len))?;
        let removed = nets.remove(&addr.masked(len));
        if nets.is_empty() {
            // Lookups stop probing this length, and its table's memory goes back to the allocator.
            *nets = HashMap::new();
            self.lengths.remove(len);
        }
        removed
    }

    /// Pushes the entry for exactly the block `addr/len` (a single address at full width), then
    /// every listed block containing it, longest prefix first.
    fn collect(&self, addr: A, len: u8, found: &mut Vec<(Offender, Slot)>) {
        let addr = addr.masked(len);
        if len >= A::WIDTH
            && let Some(&slot) = self.hosts.get(&addr)
        {
            found.push((Offender::Ip(addr.ip()), slot));
        }
        for net_len in self.lengths.longest_first().filter(|&net_len| net_len <= len) {
            let network = addr.masked(net_len);
            let Some(slot) = self.net(network, net_len) else { continue };
            if let Ok(net) = IpNet::new(network.ip(), net_len) {
                found.push((Offender::Cidr(Cidr::from_net(net)), slot));
            }
        }
    }

    /// Calls `visit` with every block and its slot.
    fn for_each_net(&self, visit: &mut impl FnMut(Offender, Slot)) {
        for net_len in self.lengths.longest_first() {
            for (network, slot) in self.nets.get(usize::from(net_len)).into_iter().flatten() {
                if let Ok(net) = IpNet::new(network.ip(), net_len) {
                    visit(Offender::Cidr(Cidr::from_net(net)), *slot);
                }
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        hash_map_bytes(&self.hosts)
            + size_of::<HashMap<A, Slot>>() * self.nets.len()
            + self.nets.iter().map(hash_map_bytes).sum::<usize>()
    }
}

/// The set of prefix lengths 0..=128 in use, one bit each.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct PrefixLengths([u64; 3]);

impl PrefixLengths {
    fn insert(&mut self, len: u8) {
        if let Some(word) = self.0.get_mut(usize::from(len / 64)) {
            *word |= 1 << (len % 64);
        }
    }

    fn remove(&mut self, len: u8) {
        if let Some(word) = self.0.get_mut(usize::from(len / 64)) {
            *word &= !(1 << (len % 64));
        }
    }

    #[cfg(test)]
    fn contains(self, len: u8) -> bool {
        self.0.get(usize::from(len / 64)).is_some_and(|word| word & (1 << (len % 64)) != 0)
    }

    /// The lengths in use, longest (most specific) first.
    fn longest_first(self) -> impl Iterator<Item = u8> {
        let words = self.0;
        let mut word_index = words.len();
        let mut bits = 0_u64;
        iter::from_fn(move || {
            while bits == 0 {
                word_index = word_index.checked_sub(1)?;
                bits = words.get(word_index).copied().unwrap_or(0);
            }
            // `bits` is not zero, so it has at most 63 leading zeros.
            let top = 63 - bits.leading_zeros();
            bits &= !(1 << top);
            u8::try_from(word_index * 64 + usize::try_from(top).ok()?).ok()
        })
    }
}

/// Which kind of name a digest belongs to.
///
/// A domain JID (`example.org` as a JID) hashes like the domain `example.org`, yet the two are
/// different offenders, so the kind is part of the key. The order puts JIDs first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
enum NameKind {
    Jid,
    Domain,
}

/// A JID or domain by its SHA-256 item id; sorting by it is sorting by item id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
struct NameKey {
    digest: [u8; 32],
    kind: NameKind,
}

impl NameKey {
    /// The key of a JID: SHA-256 over `local@domain`, as [`ostracon_protocol::rtbl::jid_item_id`].
    fn jid(jid: &BareJid) -> Self {
        let mut hasher = Sha256::new();
        // Fed in parts, so a lookup hashes the JID without building its string.
        if let Some(local) = jid.local() {
            hasher.update(local.as_bytes());
            hasher.update(b"@");
        }
        hasher.update(jid.domain().as_str().as_bytes());
        Self { digest: hasher.finalize().into(), kind: NameKind::Jid }
    }

    /// The key of a domain: SHA-256 over its name, as [`ostracon_protocol::rtbl::domain_item_id`].
    fn domain(domain: &Domain) -> Self {
        Self { digest: Sha256::digest(domain.as_str().as_bytes()).into(), kind: NameKind::Domain }
    }
}

/// JIDs and domains.
///
/// Keyed by digest rather than by name: a lookup pays one SHA-256 (tens of nanoseconds with the
/// CPU's SHA extensions) and in return each name string is stored once, in `by_digest`, which
/// the hash-prefix query needs anyway. Two different names with one SHA-256 digest would need a
/// collision, which no one can produce.
///
/// The slot is kept in both places (4 bytes more per name), so a prefix answer costs no
/// second lookup per result; `insert` and `remove` change both together.
#[derive(Clone, Default)]
struct Names {
    /// JID digests to slots, for exact lookups.
    jids: HashMap<[u8; 32], Slot>,
    /// Domain digests to slots, for exact lookups.
    domains: HashMap<[u8; 32], Slot>,
    /// Every name with its slot, in item-id order, for hash-prefix queries.
    by_digest: BTreeMap<NameKey, (Offender, Slot)>,
}

impl Names {
    fn ids(&self, kind: NameKind) -> &HashMap<[u8; 32], Slot> {
        match kind {
            NameKind::Jid => &self.jids,
            NameKind::Domain => &self.domains,
        }
    }

    fn ids_mut(&mut self, kind: NameKind) -> &mut HashMap<[u8; 32], Slot> {
        match kind {
            NameKind::Jid => &mut self.jids,
            NameKind::Domain => &mut self.domains,
        }
    }

    fn get(&self, key: NameKey) -> Option<Slot> {
        self.ids(key.kind).get(&key.digest).copied()
    }

    /// Adds a name that is not listed yet.
    fn insert(&mut self, key: NameKey, offender: &Offender, slot: Slot) -> Option<Slot> {
        self.by_digest.insert(key, (offender.clone(), slot));
        self.ids_mut(key.kind).insert(key.digest, slot)
    }

    fn remove(&mut self, key: NameKey) -> Option<Slot> {
        let removed = self.ids_mut(key.kind).remove(&key.digest);
        if removed.is_some() {
            self.by_digest.remove(&key);
        }
        removed
    }

    fn with_prefix(&self, prefix: &HashPrefix) -> Vec<(String, Offender, Slot)> {
        let start = NameKey { digest: prefix.lowest_digest(), kind: NameKind::Jid };
        self.by_digest
            .range(start..)
            .take_while(|(key, _)| prefix.matches(&key.digest))
            .map(|(key, (offender, slot))| (hex::encode(key.digest), offender.clone(), *slot))
            .collect()
    }

    fn heap_bytes(&self) -> usize {
        let strings: usize = self
            .by_digest
            .values()
            .map(|(offender, _)| match offender {
                Offender::Jid(jid) => {
                    jid.local().map_or(0, |local| malloc_bytes(local.len())) + malloc_bytes(jid.domain().as_str().len())
                }
                Offender::Domain(domain) => malloc_bytes(domain.as_str().len()),
                Offender::Ip(_) | Offender::Cidr(_) => 0,
            })
            .sum();
        hash_map_bytes(&self.jids) + hash_map_bytes(&self.domains) + btree_map_bytes(&self.by_digest) + strings
    }
}

/// A validated hash prefix: 4 to 8 hex digits, one nibble each.
struct HashPrefix {
    nibbles: Vec<u8>,
}

impl HashPrefix {
    /// Accepts 4 to 8 lowercase hex digits; item ids are lowercase, so upper case is refused
    /// rather than silently matching nothing.
    fn parse(text: &str) -> Option<Self> {
        if !(MIN_HASH_PREFIX_DIGITS..=MAX_HASH_PREFIX_DIGITS).contains(&text.len()) {
            return None;
        }
        let nibbles = text
            .bytes()
            .map(|digit| match digit {
                b'0'..=b'9' => Some(digit - b'0'),
                b'a'..=b'f' => Some(digit - b'a' + 10),
                _ => None,
            })
            .collect::<Option<Vec<u8>>>()?;
        Some(Self { nibbles })
    }

    /// The smallest digest with this prefix: the prefix followed by zeros.
    fn lowest_digest(&self) -> [u8; 32] {
        let mut digest = [0_u8; 32];
        for (position, &nibble) in self.nibbles.iter().enumerate() {
            if let Some(byte) = digest.get_mut(position / 2) {
                *byte |= if position % 2 == 0 { nibble << 4 } else { nibble };
            }
        }
        digest
    }

    fn matches(&self, digest: &[u8; 32]) -> bool {
        digest.iter().flat_map(|byte| [byte >> 4, byte & 0x0f]).zip(&self.nibbles).all(|(have, want)| have == *want)
    }
}

/// Heap bytes behind a std `HashMap`, from its capacity.
///
/// std's table (hashbrown) has a power-of-two bucket count and fills at most 7/8 of it
/// (all but one bucket below 8); each bucket holds one `(K, V)` and one control byte, plus one
/// SIMD group of trailing control bytes.
fn hash_map_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    let capacity = map.capacity();
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 { capacity + 1 } else { (capacity / 7 * 8).next_power_of_two() };
    const GROUP_WIDTH: usize = 16;
    malloc_bytes(buckets * (size_of::<(K, V)>() + 1) + GROUP_WIDTH)
}

/// Heap bytes behind a std `BTreeMap`, estimated from its length.
///
/// std's nodes hold up to 11 entries; random inserts leave them about 70% full (8 entries),
/// and internal nodes, which also carry 12 child pointers, number about a seventh of the leaves.
fn btree_map_bytes<K, V>(map: &BTreeMap<K, V>) -> usize {
    const NODE_CAPACITY: usize = 11;
    const TYPICAL_FILL: usize = 8;
    let leaf = 16 + NODE_CAPACITY * (size_of::<K>() + size_of::<V>());
    let internal = leaf + (NODE_CAPACITY + 1) * size_of::<usize>();
    let leaves = map.len().div_ceil(TYPICAL_FILL);
    leaves * malloc_bytes(leaf) + leaves.div_ceil(7) * malloc_bytes(internal)
}

/// What glibc's malloc takes for a request of `size` bytes: an 8-byte header, rounded up to
/// 16 bytes, 32 at least (empty strings allocate nothing).
fn malloc_bytes(size: usize) -> usize {
    if size == 0 { 0 } else { (size + 8).next_multiple_of(16).max(32) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ostracon_protocol::rtbl::{domain_item_id, jid_item_id};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn offender(text: &str) -> Offender {
        Offender::parse(text).unwrap()
    }

    fn names(found: &[(Offender, EntryId)]) -> Vec<String> {
        found.iter().map(|(offender, id)| format!("{offender}#{id}")).collect()
    }

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).unwrap()
    }

    #[test]
    fn exact_and_cidr_ipv4_matches() {
        let mut index = BlocklistIndex::new();
        index.insert(&offender("192.0.2.7"), 1);
        index.insert(&offender("198.51.100.0/24"), 2);
        assert_eq!(names(&index.lookup_ip(ip("192.0.2.7"))), ["192.0.2.7#1"]);
        assert!(index.lookup_ip(ip("192.0.2.8")).is_empty());
        assert_eq!(names(&index.lookup_ip(ip("198.51.100.200"))), ["198.51.100.0/24#2"]);
        assert!(index.lookup_ip(ip("198.51.101.0")).is_empty());
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn exact_and_cidr_ipv6_matches() {
        let mut index = BlocklistIndex::new();
        index.insert(&offender("2001:db8::1"), 1);
        index.insert(&offender("2001:db8:1::/48"), 2);
        assert_eq!(names(&index.lookup_ip(ip("2001:db8::1"))), ["2001:db8::1#1"]);
        assert!(index.lookup_ip(ip("2001:db8::2")).is_empty());
        assert_eq!(names(&index.lookup_ip(ip("2001:db8:1:ffff::9"))), ["2001:db8:1::/48#2"]);
        assert!(index.lookup_ip(ip("2001:db8:2::")).is_empty());
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let mut index = BlocklistIndex::new();
        index.insert(&offender("192.0.2.7"), 1);
        index.insert(&offender("198.51.100.0/24"), 2);
        assert_eq!(names(&index.lookup_ip(ip("::ffff:192.0.2.7"))), ["192.0.2.7#1"]);
        assert_eq!(names(&index.lookup_ip(ip("::ffff:198.51.100.1"))), ["198.51.100.0/24#2"]);

        // Offenders built around the parsers are keyed canonically too.
        let mapped_host = Offender::Ip(ip("::ffff:203.0.113.5"));
        index.insert(&mapped_host, 3);
        assert_eq!(names(&index.lookup_ip(ip("203.0.113.5"))), ["203.0.113.5#3"]);
        let mapped_block = Offender::Cidr(Cidr::from_net("::ffff:203.0.113.0/120".parse().unwrap()));
        index.insert(&mapped_block, 4);
        assert_eq!(names(&index.lookup_ip(ip("203.0.113.5"))), ["203.0.113.5#3", "203.0.113.0/24#4"]);
        assert_eq!(names(&index.lookup_cidr(&cidr("203.0.113.0/24"))), ["203.0.113.0/24#4"]);
        assert!(index.remove(&offender("203.0.113.0/24")));
        assert!(index.remove(&offender("203.0.113.5")));
        assert_eq!(index.len(), 2);

        // IPv6 blocks outside the mapped range never cover IPv4, as `Cidr::contains` says.
        index.insert(&offender("::/0"), 5);
        assert_eq!(names(&index.lookup_ip(ip("192.0.2.7"))), ["192.0.2.7#1"]);
        assert_eq!(names(&index.lookup_ip(ip("2001:db8::1"))), ["::/0#5"]);
    }

    #[test]
    fn most_specific_first() {
        let mut index = BlocklistIndex::new();
        for (text, id) in
            [("10.0.0.0/8", 1), ("10.1.2.0/24", 2), ("10.1.0.0/16", 3), ("10.1.2.3", 4), ("10.1.2.0/28", 5)]
        {
            index.insert(&offender(text), id);
        }
        assert_eq!(
            names(&index.lookup_ip(ip("10.1.2.3"))),
            ["10.1.2.3#4", "10.1.2.0/28#5", "10.1.2.0/24#2", "10.1.0.0/16#3", "10.0.0.0/8#1"]
        );
        assert_eq!(names(&index.lookup_ip(ip("10.1.2.200"))), ["10.1.2.0/24#2", "10.1.0.0/16#3", "10.0.0.0/8#1"]);
        assert_eq!(names(&index.lookup_cidr(&cidr("10.1.2.0/24"))), ["10.1.2.0/24#2", "10.1.0.0/16#3", "10.0.0.0/8#1"]);
        assert_eq!(names(&index.lookup_cidr(&cidr("10.1.3.0/24"))), ["10.1.0.0/16#3", "10.0.0.0/8#1"]);
        // A wider block is not inside a narrower one.
        assert!(index.lookup_cidr(&cidr("10.0.0.0/7")).is_empty());
    }

    #[test]
    fn zero_and_full_length_edges() {
        let mut index = BlocklistIndex::new();
        index.insert(&offender("0.0.0.0/0"), 1);
        index.insert(&offender("192.0.2.1/32"), 2);
        index.insert(&offender("192.0.2.1"), 3);
        index.insert(&offender("2001:db8::1/128"), 4);
        index.insert(&offender("::/0"), 5);
        assert_eq!(index.len(), 5);
        assert_eq!(names(&index.lookup_ip(ip("255.255.255.255"))), ["0.0.0.0/0#1"]);
        assert_eq!(names(&index.lookup_ip(ip("0.0.0.0"))), ["0.0.0.0/0#1"]);
        assert_eq!(names(&index.lookup_ip(ip("192.0.2.1"))), ["192.0.2.1#3", "192.0.2.1/32#2", "0.0.0.0/0#1"]);
        assert_eq!(names(&index.lookup_cidr(&cidr("192.0.2.1/32"))), ["192.0.2.1#3", "192.0.2.1/32#2", "0.0.0.0/0#1"]);
        assert_eq!(names(&index.lookup_cidr(&cidr("0.0.0.0/0"))), ["0.0.0.0/0#1"]);
        assert_eq!(names(&index.lookup_ip(ip("2001:db8::1"))), ["2001:db8::1/128#4", "::/0#5"]);
        assert_eq!(names(&index.lookup_ip(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))), ["::/0#5"]);
        assert!(index.v4.lengths.contains(0) && index.v4.lengths.contains(32));
        assert!(index.v6.lengths.contains(0) && index.v6.lengths.contains(128));
        assert_eq!(index.v6.lengths.longest_first().collect::<Vec<_>>(), [128, 0]);
    }

    #[test]
    fn remove_really_removes() {
        let mut index = BlocklistIndex::new();
        index.insert(&offender("192.0.2.0/24"), 1);
        index.insert(&offender("198.51.100.0/24"), 2);
        index.insert(&offender("2001:db8::/64"), 3);
        index.insert(&offender("192.0.2.9"), 4);
        assert!(index.remove(&offender("192.0.2.0/24")));
        assert!(!index.remove(&offender("192.0.2.0/24")));
        assert!(index.v4.lengths.contains(24), "198.51.100.0/24 still uses /24");
        assert!(index.remove(&offender("198.51.100.0/24")));
        assert!(!index.v4.lengths.contains(24));
        assert_eq!(index.v4.lengths, PrefixLengths::default());
        assert!(index.v4.nets.iter().all(|nets| nets.capacity() == 0), "emptied maps free their tables");
        assert!(index.remove(&offender("2001:db8::/64")));
        assert!(!index.v6.lengths.contains(64));
        assert!(index.remove(&offender("192.0.2.9")));
        assert!(!index.remove(&offender("192.0.2.9")));
        assert!(index.lookup_ip(ip("192.0.2.9")).is_empty());
        assert!(index.is_empty());
        // Removing what was never there leaves the bitset alone.
        assert!(!index.remove(&offender("10.0.0.0/8")));
        assert_eq!(index.v4.lengths, PrefixLengths::default());
    }

    #[test]
    fn a_removed_entrys_slot_is_reused_and_rows_stay_with_their_offenders() {
        let mut index = BlocklistIndex::new();
        index.insert(&offender("192.0.2.1"), 1);
        index.insert(&offender("10.0.0.0/8"), 2);
        index.insert(&offender("bad.example"), 3);
        assert!(index.remove(&offender("10.0.0.0/8")));
        index.insert(&offender("user@bad.example"), 4);
        assert_eq!(index.rows.rows.len(), 3, "the freed slot was reused");
        assert_eq!(index.row(&offender("user@bad.example")), Some(4));
        assert_eq!(index.row(&offender("192.0.2.1")), Some(1));
        assert_eq!(index.row(&offender("10.0.0.0/8")), None);
        index.insert(&offender("192.0.2.1"), 5);
        assert_eq!(names(&index.lookup_ip(ip("192.0.2.1"))), ["192.0.2.1#5"]);
        assert_eq!(
            names(&index.lookup_jid(&BareJid::parse("user@bad.example").unwrap())),
            ["user@bad.example#4", "bad.example#3"]
        );
        *index.row_mut(&offender("bad.example")).unwrap() = 6;
        assert!(index.row_mut(&offender("10.0.0.0/8")).is_none(), "a removed entry has no row to change");
        assert_eq!(index.row(&offender("bad.example")), Some(6));
        index.for_each_row_mut(|row| *row += 10);
        assert_eq!(index.row(&offender("user@bad.example")), Some(14));
    }

    #[test]
    fn replacing_keeps_one_entry() {
        let mut index = BlocklistIndex::new();
        for (text, first, second) in
            [("192.0.2.1", 1, 2), ("10.0.0.0/8", 3, 4), ("user@bad.example", 5, 6), ("bad.example", 7, 8)]
        {
            index.insert(&offender(text), first);
            index.insert(&offender(text), second);
        }
        assert_eq!(index.len(), 4);
        assert_eq!(names(&index.lookup_ip(ip("10.0.0.1"))), ["10.0.0.0/8#4"]);
        assert_eq!(names(&index.lookup_ip(ip("192.0.2.1"))), ["192.0.2.1#2"]);
        let jid = BareJid::parse("user@bad.example").unwrap();
        assert_eq!(names(&index.lookup_jid(&jid)), ["user@bad.example#6", "bad.example#8"]);
        assert_eq!(index.names.by_digest.len(), 2);
    }

    #[test]
    fn jid_is_covered_by_its_domain() {
        let mut index = BlocklistIndex::new();
        index.insert(&offender("bad.example"), 1);
        index.insert(&offender("spammer@other.example"), 2);
        let on_bad = BareJid::parse("Anyone@Bad.Example/phone").unwrap();
        assert_eq!(names(&index.lookup_jid(&on_bad)), ["bad.example#1"]);
        let spammer = BareJid::parse("spammer@other.example").unwrap();
        assert_eq!(names(&index.lookup_jid(&spammer)), ["spammer@other.example#2"]);
        assert!(index.lookup_jid(&BareJid::parse("friend@other.example").unwrap()).is_empty());
        // Only the exact domain counts, as in the RTBL convention.
        assert!(index.lookup_jid(&BareJid::parse("user@muc.bad.example").unwrap()).is_empty());
        // A domain JID and the domain are different offenders with one item id.
        index.insert(&Offender::Jid(BareJid::parse("bad.example").unwrap()), 3);
        assert_eq!(
            names(&index.lookup_jid(&BareJid::parse("bad.example").unwrap())),
            ["bad.example#3", "bad.example#1"]
        );
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn domain_lookup() {
        let mut index = BlocklistIndex::new();
        index.insert(&offender("bad.example"), 1);
        index.insert(&offender("user@worse.example"), 2);
        assert_eq!(names(&index.lookup_domain(&Domain::parse("BAD.example.").unwrap())), ["bad.example#1"]);
        assert!(index.lookup_domain(&Domain::parse("worse.example").unwrap()).is_empty());
        assert!(index.remove(&offender("bad.example")));
        assert!(index.lookup_domain(&Domain::parse("bad.example").unwrap()).is_empty());
    }

    #[test]
    fn digests_are_rtbl_item_ids() {
        for text in ["user@bad.example", "bad.example", "ｕser@Example.org"] {
            let jid = BareJid::parse(text).unwrap();
            assert_eq!(hex::encode(NameKey::jid(&jid).digest), jid_item_id(&jid), "{text}");
            assert_eq!(hex::encode(NameKey::domain(jid.domain()).digest), domain_item_id(jid.domain()));
        }
    }

    #[test]
    fn hash_prefix_rejects_bad_prefixes() {
        let index: BlocklistIndex = BlocklistIndex::new();
        for bad in ["", "abc", "ABCD", "123456789", "abcg", "12 4", "+123", "ab\u{e9}d", "0x12"] {
            assert!(index.hashes_with_prefix(bad).is_none(), "{bad:?}");
        }
        for good in ["abcd", "01234", "0123456", "deadbeef"] {
            assert_eq!(index.hashes_with_prefix(good), Some(Vec::new()), "{good:?}");
        }
    }

    #[test]
    fn hash_prefix_finds_jids_and_domains() {
        // `spammer@bad.example` and the domain `d33384.example` share the item-id prefix `ff18e`
        // (found by search; the assertions below check it).
        let jid = BareJid::parse("spammer@bad.example").unwrap();
        let domain = Domain::parse("d33384.example").unwrap();
        let jid_id = jid_item_id(&jid);
        let domain_id = domain_item_id(&domain);
        let shared = jid_id.chars().zip(domain_id.chars()).take_while(|(a, b)| a == b).count();
        assert!(shared >= 4, "{jid_id} {domain_id}");
        let prefix = &jid_id[..4];

        let mut index = BlocklistIndex::new();
        index.insert(&Offender::Jid(jid.clone()), 1);
        index.insert(&Offender::Domain(domain.clone()), 2);
        index.insert(&offender("other@bad.example"), 3);
        index.insert(&offender("192.0.2.1"), 4);

        let mut expected =
            vec![(jid_id.clone(), Offender::Jid(jid), 1), (domain_id.clone(), Offender::Domain(domain), 2)];
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let found = index.hashes_with_prefix(prefix).unwrap();
        assert_eq!(found, expected);

        // Longer prefixes narrow the answer; odd lengths work.
        for digits in 5..=8 {
            let found = index.hashes_with_prefix(&jid_id[..digits]).unwrap();
            assert!(found.iter().any(|(item, _, id)| *item == jid_id && *id == 1), "{digits}");
            assert!(found.iter().all(|(item, _, _)| item.starts_with(&jid_id[..digits])));
        }
        // Removing an entry removes it from prefix answers.
        assert!(index.remove(&offender("spammer@bad.example")));
        let found = index.hashes_with_prefix(prefix).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, domain_id);
    }

    #[test]
    fn hash_prefix_at_the_ends_of_the_hash_space() {
        let mut index = BlocklistIndex::new();
        index.insert(&offender("bad.example"), 1);
        let id = domain_item_id(&Domain::parse("bad.example").unwrap());
        assert_eq!(index.hashes_with_prefix(&id[..8]).unwrap().len(), 1);
        assert!(index.hashes_with_prefix("ffffffff").unwrap().iter().all(|(item, _, _)| item.starts_with("ffffffff")));
        assert!(index.hashes_with_prefix("00000000").unwrap().iter().all(|(item, _, _)| item.starts_with("00000000")));
    }

    #[test]
    fn debug_shows_counts_only() {
        let mut index = BlocklistIndex::new();
        index.insert(&offender("10.0.0.0/8"), 1);
        index.insert(&offender("secret@bad.example"), 2);
        let text = format!("{index:?}");
        assert!(text.contains("len: 2") && text.contains("[8]") && !text.contains("secret"), "{text}");
        assert!(index.approx_heap_bytes() > 0);
    }

    /// A small deterministic PRNG (xorshift64*), so failures replay.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[usize::try_from(self.below(items.len() as u64)).unwrap()]
        }
    }

    /// The obvious implementation: a list scanned on every lookup.
    #[derive(Default)]
    struct Naive(Vec<(Offender, EntryId)>);

    impl Naive {
        fn insert(&mut self, offender: &Offender, id: EntryId) {
            match self.0.iter_mut().find(|(listed, _)| listed == offender) {
                Some(entry) => entry.1 = id,
                None => self.0.push((offender.clone(), id)),
            }
        }

        fn remove(&mut self, offender: &Offender) -> bool {
            let before = self.0.len();
            self.0.retain(|(listed, _)| listed != offender);
            before != self.0.len()
        }

        fn lookup_net(&self, query: IpNet) -> Vec<(Offender, EntryId)> {
            let query = match query {
                IpNet::V6(v6) if v6.prefix_len() >= 96 && v6.network().to_ipv4_mapped().is_some() => {
                    IpNet::new(IpAddr::V4(v6.network().to_ipv4_mapped().unwrap()), v6.prefix_len() - 96).unwrap()
                }
                other => other,
            };
            let mut hosts: Vec<_> = self
                .0
                .iter()
                .filter(|(listed, _)| {
                    matches!(listed, Offender::Ip(ip) if query.prefix_len() == query.max_prefix_len() && *ip == query.addr())
                })
                .cloned()
                .collect();
            let mut blocks: Vec<_> = self
                .0
                .iter()
                .filter(|(listed, _)| matches!(listed, Offender::Cidr(block) if block.net().contains(&query)))
                .cloned()
                .collect();
            blocks.sort_by_key(|(listed, _)| match listed {
                Offender::Cidr(block) => std::cmp::Reverse(block.net().prefix_len()),
                _ => std::cmp::Reverse(0),
            });
            hosts.append(&mut blocks);
            hosts
        }

        fn lookup_ip(&self, ip: IpAddr) -> Vec<(Offender, EntryId)> {
            let ip = canonical_ip(ip);
            self.lookup_net(IpNet::from(ip))
        }

        fn lookup_jid(&self, jid: &BareJid) -> Vec<(Offender, EntryId)> {
            let own = self.0.iter().filter(|(listed, _)| *listed == Offender::Jid(jid.clone()));
            let domain = self.0.iter().filter(|(listed, _)| *listed == Offender::Domain(jid.domain().clone()));
            own.chain(domain).cloned().collect()
        }

        fn hashes_with_prefix(&self, prefix: &str) -> Vec<(String, Offender, EntryId)> {
            let mut found: Vec<_> = self
                .0
                .iter()
                .filter_map(|(listed, id)| {
                    let item = match listed {
                        Offender::Jid(jid) => jid_item_id(jid),
                        Offender::Domain(domain) => domain_item_id(domain),
                        _ => return None,
                    };
                    item.starts_with(prefix).then(|| (item, listed.clone(), *id))
                })
                .collect();
            // By item id, and a JID before the domain with the same item id.
            found.sort_by_key(|(item, listed, _)| (item.clone(), matches!(listed, Offender::Domain(_))));
            found
        }
    }

    #[test]
    fn matches_a_naive_scan() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        // Small address pools and name pools make inserts collide, nest and repeat.
        let v4_bases: Vec<u32> = vec![0x0a00_0000, 0x0a00_0001, 0x0a01_0203, 0xc000_0200, 0xc000_02ff, 0xffff_ffff, 0];
        let v6_bases: Vec<u128> = vec![
            0x2001_0db8_u128 << 96,
            (0x2001_0db8_u128 << 96) | 1,
            (0x2001_0db8_u128 << 96) | (0xabcd << 64),
            u128::MAX,
            0,
        ];
        let domains: Vec<Domain> = ["bad.example", "worse.example", "muc.bad.example", "clean.example"]
            .iter()
            .map(|text| Domain::parse(text).unwrap())
            .collect();
        let mut jids: Vec<BareJid> = Vec::new();
        for domain in &domains {
            jids.push(BareJid::from_domain(domain.clone()));
            for local in ["spam", "bot", "x"] {
                jids.push(BareJid::parse(&format!("{local}@{domain}")).unwrap());
            }
        }

        let random_v4 = |rng: &mut XorShift| -> u32 { rng.pick(&v4_bases) ^ u32::try_from(rng.below(4)).unwrap() };
        let random_v6 = |rng: &mut XorShift| -> u128 { rng.pick(&v6_bases) ^ u128::from(rng.below(4)) };
        let random_len = |rng: &mut XorShift, width: u8| -> u8 {
            // Mostly long prefixes, where the small pools nest, with the edges now and then.
            match rng.below(8) {
                0 => 0,
                1 => width,
                _ => width - u8::try_from(rng.below(u64::from(width.min(12)))).unwrap(),
            }
        };
        let random_offender = |rng: &mut XorShift| -> Offender {
            match rng.below(6) {
                0 => Offender::Ip(Ipv4Addr::from_bits(random_v4(rng)).into()),
                1 => Offender::Ip(Ipv6Addr::from_bits(random_v6(rng)).into()),
                2 => {
                    let len = random_len(rng, 32);
                    Offender::Cidr(Cidr::from_net(IpNet::new(Ipv4Addr::from_bits(random_v4(rng)).into(), len).unwrap()))
                }
                3 => {
                    let len = random_len(rng, 128);
                    Offender::Cidr(Cidr::from_net(IpNet::new(Ipv6Addr::from_bits(random_v6(rng)).into(), len).unwrap()))
                }
                4 => Offender::Jid(rng.pick(&jids).clone()),
                _ => Offender::Domain(rng.pick(&domains).clone()),
            }
        };

        let mut index = BlocklistIndex::new();
        let mut naive = Naive::default();
        let mut next_id: EntryId = 0;
        // Answers with more than one entry, so the test is known to compare orderings, not empty lists.
        let mut multi_entry_answers = 0;
        let mut check =
            |step: usize, what: &dyn fmt::Display, got: Vec<(Offender, EntryId)>, want: Vec<(Offender, EntryId)>| {
                assert_eq!(got, want, "step {step}: {what}");
                if got.len() > 1 {
                    multi_entry_answers += 1;
                }
            };
        let mut prefix_hits = 0;
        for step in 0..6000 {
            match rng.below(10) {
                0..=3 => {
                    let listed = random_offender(&mut rng);
                    next_id += 1;
                    index.insert(&listed, next_id);
                    naive.insert(&listed, next_id);
                }
                4..=5 => {
                    let listed = random_offender(&mut rng);
                    assert_eq!(index.remove(&listed), naive.remove(&listed), "step {step}: remove {listed}");
                }
                6 => {
                    let query = Ipv4Addr::from_bits(random_v4(&mut rng));
                    // Ask in both spellings: plain and IPv4-mapped.
                    let query = if rng.below(2) == 0 { IpAddr::V4(query) } else { IpAddr::V6(query.to_ipv6_mapped()) };
                    check(step, &query, index.lookup_ip(query), naive.lookup_ip(query));
                }
                7 => {
                    let query = IpAddr::V6(Ipv6Addr::from_bits(random_v6(&mut rng)));
                    check(step, &query, index.lookup_ip(query), naive.lookup_ip(query));
                }
                8 => {
                    let query = match random_offender(&mut rng) {
                        Offender::Cidr(block) => block,
                        Offender::Ip(ip) => Cidr::from_net(IpNet::from(ip)),
                        _ => Cidr::from_net(IpNet::new(Ipv4Addr::from_bits(random_v4(&mut rng)).into(), 30).unwrap()),
                    };
                    check(step, &query, index.lookup_cidr(&query), naive.lookup_net(query.net()));
                }
                _ => {
                    let jid = rng.pick(&jids).clone();
                    check(step, &jid, index.lookup_jid(&jid), naive.lookup_jid(&jid));
                    let item = if rng.below(2) == 0 { jid_item_id(&jid) } else { domain_item_id(jid.domain()) };
                    let digits = usize::try_from(4 + rng.below(5)).unwrap();
                    let prefix = &item[..digits];
                    let found = index.hashes_with_prefix(prefix).unwrap();
                    assert_eq!(found, naive.hashes_with_prefix(prefix), "step {step}: {prefix}");
                    prefix_hits += usize::from(!found.is_empty());
                }
            }
            assert_eq!(index.len(), naive.0.len(), "step {step}");
            if step % 250 == 0 {
                // Every entry of each kind, with its row, and each by exact offender.
                for kind in KINDS {
                    let mut got = Vec::new();
                    index.for_each_of_kind(kind, |offender, id| got.push((offender.to_string(), *id)));
                    got.sort();
                    let mut want: Vec<(String, EntryId)> =
                        naive.0.iter().filter(|(o, _)| o.kind() == kind).map(|(o, id)| (o.to_string(), *id)).collect();
                    want.sort();
                    assert_eq!(got, want, "step {step}: every {kind}");
                }
                for (listed, id) in &naive.0 {
                    assert_eq!(index.row(listed), Some(*id), "step {step}: {listed}");
                }
            }
        }
        assert!(multi_entry_answers > 300 && prefix_hits > 100, "{multi_entry_answers} {prefix_hits}");
        // The bitsets name exactly the lengths still in use.
        for (family_lengths, is_v4) in [(index.v4.lengths, true), (index.v6.lengths, false)] {
            let mut expected: Vec<u8> = naive
                .0
                .iter()
                .filter_map(|(listed, _)| match listed {
                    Offender::Cidr(block) if block.net().addr().is_ipv4() == is_v4 => Some(block.net().prefix_len()),
                    _ => None,
                })
                .collect();
            expected.sort_unstable_by(|a, b| b.cmp(a));
            expected.dedup();
            assert_eq!(family_lengths.longest_first().collect::<Vec<_>>(), expected);
        }
    }
}
