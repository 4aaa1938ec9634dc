//! Prometheus metrics in the text exposition format, kept in a few counters rather than a
//! metrics framework: the node has a handful of numbers worth watching.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// The status codes a counter has a slot for (100 to 599).
const STATUSES: std::ops::Range<u16> = 100..600;

/// One route's counters, a slot per status code.
type StatusCounters = [AtomicU64; STATUSES.end as usize - STATUSES.start as usize];

/// Request counters by route template and status. A request takes a shared read lock and one
/// atomic add; only a route's first request takes the write lock. Routes are templates
/// (`/v1/lookup/{kind}/{*value}`, `unmatched`), so the table stays as small as the router.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: RwLock<BTreeMap<String, Arc<StatusCounters>>>,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, route: &str, status: u16) {
        let slot = usize::from(status.clamp(STATUSES.start, STATUSES.end - 1) - STATUSES.start);
        let known = self.requests.read().unwrap_or_else(PoisonError::into_inner).get(route).cloned();
        let counters = known.unwrap_or_else(|| {
            let mut requests = self.requests.write().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                requests
                    .entry(route.to_owned())
                    .or_insert_with(|| Arc::new(std::array::from_fn(|_| AtomicU64::new(0)))),
            )
        });
        counters[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the request counters, plus the counters and gauges the caller supplies
    /// (`name`, help, value) and the per-peer families.
    pub fn render(&self, counters: &[(&str, &str, u64)], gauges: &[(&str, &str, f64)], peers: &[PeerFamily]) -> String {
        let mut out = String::new();
        out.push_str("# HELP ostracon_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE ostracon_http_requests_total counter\n");
        let requests = self.requests.read().unwrap_or_else(PoisonError::into_inner);
        for (route, counters) in requests.iter() {
            let route = escape_label(route);
            for (status, count) in STATUSES.zip(counters.iter()) {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ =
                        writeln!(out, "ostracon_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}");
                }
            }
        }
        drop(requests);
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        for family in peers {
            let (name, help, kind) = (family.name, family.help, family.kind);
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (peer, value) in &family.samples {
                let _ = writeln!(out, "{name}{{peer=\"{}\"}} {value}", escape_label(peer));
            }
        }
        out
    }
}

/// One metric family labelled by peer.
#[derive(Clone, Debug)]
pub struct PeerFamily {
    /// Its name.
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// (peer JID, value).
    pub samples: Vec<(String, f64)>,
}

/// A label value as the exposition format quotes it.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
