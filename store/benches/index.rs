//! Benchmark of the in-memory blocklist index (`ostracon_store::index`) from 1k to 1M entries.
//!
//! The product target is a per-lookup cost that stays flat as the list grows, and under 100
//! bytes of memory per entry. For each size this builds an index with a realistic mix
//! (70% IPv4 addresses, 10% IPv4 blocks /16../30, 5% IPv6 addresses, 10% JIDs, 5% domains),
//! then times lookups and prints one markdown table row.
//!
//! Run: `cargo bench -p ostracon-store --bench index`. A plain `main` (no criterion) keeps the
//! dependency list short; each figure averages at least 200k calls.
//!
//! Queries are drawn at random from the listed values before timing and then read in order, so
//! the figures hold the index's own cache misses and not those of picking a query.
//! Memory appears twice: the index's capacity-based estimate, and, as a cross-check on Linux,
//! how much the resident set grew while the index was built (an upper bound: tables left
//! behind by rehashing may stay with the allocator).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use ostracon_protocol::ids::{BareJid, Cidr, Domain, Offender};
use ostracon_store::index::BlocklistIndex;

/// Calls per timed figure.
const LOOKUPS: usize = 400_000;

/// A small deterministic PRNG (xorshift64*), so every run builds the same lists.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A uniformly chosen index below `len` (which must not be zero).
    fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(len).unwrap_or(u64::MAX)).unwrap_or(0)
    }

    /// The upper 32 bits, which are the better ones in xorshift*.
    fn next_u32(&mut self) -> u32 {
        u32::try_from(self.next() >> 32).unwrap_or(0)
    }
}

/// The offenders for one size, plus pools of listed values to look up.
struct Workload {
    offenders: Vec<Offender>,
    listed_v4: Vec<Ipv4Addr>,
    listed_jids: Vec<BareJid>,
}

/// Builds `size` offenders in the product mix.
///
/// Listed IPv4 addresses and blocks all lie in 0.0.0.0/1, so addresses in 128.0.0.0/1 are
/// guaranteed misses that still probe every prefix length in use.
fn workload(size: usize, rng: &mut XorShift) -> Workload {
    let mut offenders = Vec::with_capacity(size);
    let mut listed_v4 = Vec::new();
    let mut listed_jids = Vec::new();
    // JIDs cluster on servers, as spam does: about one server per hundred entries.
    let servers = size / 100 + 1;
    for _ in 0..size {
        let offender = match rng.next() % 100 {
            0..70 => {
                let addr = Ipv4Addr::from_bits(rng.next_u32() >> 1);
                listed_v4.push(addr);
                Offender::Ip(IpAddr::V4(addr))
            }
            70..80 => {
                let len = 16 + u8::try_from(rng.next() % 15).unwrap_or(0);
                let net = Ipv4Net::new(Ipv4Addr::from_bits(rng.next_u32() >> 1), len).unwrap_or_default();
                Offender::Cidr(Cidr::from_net(IpNet::V4(net)))
            }
            80..85 => {
                let addr = (0x2001_0db8_u128 << 96) | (u128::from(rng.next()) << 32) | u128::from(rng.next_u32());
                Offender::Ip(IpAddr::V6(Ipv6Addr::from_bits(addr)))
            }
            85..95 => {
                let text = format!("user{:x}@chat{}.example", rng.next_u32(), rng.index(servers));
                let Ok(jid) = BareJid::parse(&text) else { continue };
                listed_jids.push(jid.clone());
                Offender::Jid(jid)
            }
            _ => {
                let Ok(domain) = Domain::parse(&format!("spam{:x}.example", rng.next())) else { continue };
                Offender::Domain(domain)
            }
        };
        offenders.push(offender);
    }
    Workload { offenders, listed_v4, listed_jids }
}

/// Average nanoseconds per call of `call` over each of `queries`.
fn per_call<Q>(queries: &[Q], mut call: impl FnMut(&Q)) -> f64 {
    let start = Instant::now();
    for query in queries {
        call(query);
    }
    nanos(start.elapsed()) / queries.len().max(1) as f64
}

fn nanos(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e9
}

/// `LOOKUPS` values drawn at random from `pool`.
fn draw<T: Clone>(pool: &[T], rng: &mut XorShift) -> Vec<T> {
    (0..LOOKUPS).filter_map(|_| pool.get(rng.index(pool.len())).cloned()).collect()
}

/// The resident set size in bytes, on Linux (`/proc/self/statm` counts 4 KiB pages there).
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    println!(
        "| entries | build (ms) | insert (ns/entry) | lookup_ip hit (ns) | lookup_ip miss (ns) | lookup_jid hit (ns) \
         | hash prefix, 4 digits (ns) | results per 4-digit prefix | hash prefix, 8 digits (ns) | heap estimate (bytes/entry) | RSS growth (bytes/entry) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Indexes, workloads and queries all stay allocated to the end, so a later build cannot
    // reuse memory an earlier size freed and look smaller than it is.
    let mut keep = Vec::new();
    let all_prefixes: Vec<String> = (0..=0xffff_u32).map(|prefix| format!("{prefix:04x}")).collect();
    for size in [1_000, 10_000, 100_000, 1_000_000] {
        let work = workload(size, &mut rng);
        if work.listed_v4.is_empty() || work.listed_jids.is_empty() {
            continue;
        }

        let resident_before = resident_bytes();
        let start = Instant::now();
        let mut index = BlocklistIndex::new();
        for (id, offender) in (1_i64..).zip(&work.offenders) {
            index.insert(offender, id);
        }
        let build = start.elapsed();
        let resident_after = resident_bytes();
        let entries = index.len();

        let hits: Vec<IpAddr> = draw(&work.listed_v4, &mut rng).into_iter().map(IpAddr::V4).collect();
        // Listed addresses and blocks lie in 0.0.0.0/1, so these miss, after probing every length in use.
        let misses: Vec<IpAddr> =
            (0..LOOKUPS).map(|_| IpAddr::V4(Ipv4Addr::from_bits(rng.next_u32() | 0x8000_0000))).collect();
        let jids = draw(&work.listed_jids, &mut rng);
        let prefixes = draw(&all_prefixes, &mut rng);
        // Eight digits almost never match: this times the B-tree search without building answers.
        let long_prefixes: Vec<String> = (0..LOOKUPS).map(|_| format!("{:08x}", rng.next_u32())).collect();

        let hit = per_call(&hits, |&ip| {
            black_box(index.lookup_ip(black_box(ip)));
        });
        let miss = per_call(&misses, |&ip| {
            black_box(index.lookup_ip(black_box(ip)));
        });
        let jid = per_call(&jids, |jid| {
            black_box(index.lookup_jid(black_box(jid)));
        });
        let mut results = 0_usize;
        let prefix = per_call(&prefixes, |prefix| {
            let found = index.hashes_with_prefix(black_box(prefix)).unwrap_or_default();
            results += found.len();
            black_box(found);
        });

        let long_prefix = per_call(&long_prefixes, |prefix| {
            black_box(index.hashes_with_prefix(black_box(prefix)));
        });

        let per_entry = |bytes: usize| bytes as f64 / entries.max(1) as f64;
        let build_ms = nanos(build) / 1e6;
        let insert_ns = nanos(build) / work.offenders.len() as f64;
        let results_per_prefix = results as f64 / prefixes.len().max(1) as f64;
        let estimate = per_entry(index.approx_heap_bytes());
        let resident = match (resident_before, resident_after) {
            (Some(before), Some(after)) => format!("{:.1}", per_entry(after.saturating_sub(before))),
            _ => "n/a".to_owned(),
        };
        println!(
            "| {entries} | {build_ms:.1} | {insert_ns:.0} | {hit:.0} | {miss:.0} | {jid:.0} | {prefix:.0} \
             | {results_per_prefix:.2} | {long_prefix:.0} | {estimate:.1} | {resident} |"
        );
        keep.push((index, work, hits, misses, jids, prefixes, long_prefixes));
    }
    black_box(keep);
}
