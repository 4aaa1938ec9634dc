//! Prometheus metrics in the text exposition format, kept in a few counters rather than a
//! metrics framework: the node has a handful of numbers worth watching.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Request counters by route template and status.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, route: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *requests.entry((route.to_owned(), status)).or_insert(0) += 1;
    }

    /// Renders the request counters, plus the counters and gauges the caller supplies
    /// (`name`, help, value) and the per-peer families.
    pub fn render(&self, counters: &[(&str, &str, u64)], gauges: &[(&str, &str, f64)], peers: &[PeerFamily]) -> String {
        let mut out = String::new();
        out.push_str("# HELP ostracon_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE ostracon_http_requests_total counter\n");
        let requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((route, status), count) in requests.iter() {
            let route = escape_label(route);
            let _ = writeln!(out, "ostracon_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}");
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
