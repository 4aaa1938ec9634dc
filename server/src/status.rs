//! `ostracon status` for people: `GET /v1/status` rendered as a few aligned lines, the way
//! `prosodyctl status` reads. Scripts use `-o json`, the route's own document.

use std::fmt::Write as _;

use serde_json::Value;

/// The status document as text, one line per fact and one per peer.
pub fn render(status: &Value) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let mut out = String::new();
    let node = &status["node"];
    let key = node["key"]["fingerprint"].as_str().unwrap_or("-");
    let _ = writeln!(out, "node      {} ({})", text(&node["domain"]), node["component"].as_str().unwrap_or("XMPP off"));
    let _ = writeln!(out, "key       {key}");
    let xmpp = &status["xmpp"];
    let _ = match xmpp["last_error"].as_str() {
        Some(error) => writeln!(out, "xmpp      {}: {error}", text(&xmpp["state"])),
        None => writeln!(out, "xmpp      {}", text(&xmpp["state"])),
    };
    for warning in xmpp["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "warning   {}", warning.as_str().unwrap_or("?"));
    }
    let _ = writeln!(
        out,
        "database  {}; {} entries listed; log of {} leaves; {} changes held by the brake",
        text(&status["database"]),
        status["listed"],
        status["log_size"],
        status["held"],
    );
    let peers = status["peers"].as_array().map(Vec::as_slice).unwrap_or_default();
    let _ = if peers.is_empty() {
        writeln!(out, "peers     none (ostracon peers add JID)")
    } else {
        writeln!(out, "peers")
    };
    let width = peers.iter().filter_map(|p| p["jid"].as_str()).map(str::len).max().unwrap_or(0);
    for peer in peers {
        let delivery = &peer["delivery"];
        let mut line = format!(
            "  {:width$}  {:9}  {:10}  {:11}",
            text(&peer["jid"]),
            text(&peer["state"]),
            text(&peer["trust"]),
            text(&delivery["status"]),
        );
        if delivery["pending"].as_u64().unwrap_or(0) > 0 {
            let _ = write!(line, "  {} waiting", delivery["pending"]);
        }
        if let Some(at) = delivery["last_delivered_at"].as_str() {
            let _ = write!(line, "  last answer {at}");
        }
        if let Some(error) = delivery["last_error"].as_str() {
            let _ = write!(line, "  last error: {error}");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let counters = status["counters"].as_object();
    let counted: Vec<String> = counters
        .into_iter()
        .flatten()
        .filter(|(name, value)| {
            value.as_u64().unwrap_or(0) > 0
                && (name.contains("refused")
                    || name.contains("dropped")
                    || name.contains("rate_limited")
                    || name.contains("unmatched"))
        })
        .map(|(name, value)| {
            format!("{} {value}", name.trim_start_matches("ostracon_xmpp_").trim_end_matches("_total"))
        })
        .collect();
    if !counted.is_empty() {
        let _ = writeln!(out, "refusals  {}", counted.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_link_and_an_unreachable_peer_read_plainly() {
        let status = serde_json::json!({
            "node": { "domain": "example.org", "component": "incidents.example.org", "key": { "fingerprint": "685d fcce" } },
            "xmpp": { "state": "connecting", "last_error": "the XMPP server at 127.0.0.1:5347 has no component incidents.example.org (host-unknown)" },
            "database": "ok", "listed": 12, "log_size": 40, "held": 0,
            "peers": [
                { "jid": "incidents.a.example", "state": "buddy", "trust": "auto-apply",
                  "delivery": { "status": "ok", "pending": 0, "last_delivered_at": "2026-12-02T07:43:59Z", "last_error": null } },
                { "jid": "incidents.nowhere.example", "state": "requested", "trust": "accept",
                  "delivery": { "status": "unreachable", "pending": 2, "last_delivered_at": null, "last_error": "remote-server-not-found" } },
            ],
            "counters": { "ostracon_xmpp_stanzas_refused_total": 3, "ostracon_xmpp_stanzas_in_total": 90 },
        });
        let text = render(&status);
        assert!(text.contains("xmpp      connecting: the XMPP server at 127.0.0.1:5347 has no component"), "{text}");
        assert!(text.contains("incidents.nowhere.example  requested  accept      unreachable  2 waiting  last error: remote-server-not-found"), "{text}");
        assert!(
            text.contains(
                "incidents.a.example        buddy      auto-apply  ok           last answer 2026-12-02T07:43:59Z"
            ),
            "{text}"
        );
        assert!(text.contains("refusals  stanzas_refused 3") && !text.contains("stanzas_in"), "{text}");
    }
}
