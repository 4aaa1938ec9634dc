//! `[rtbl]`: the node's XEP-0060 RTBL service, which Prosody's and ejabberd's mod_muc_rtbl
//! and mod_anti_spam read (spec/blocklists.md, RTBL service).
//!
//! Consumers ask once, at their own start-up, usually before our component is connected, and
//! never again; so `[[rtbl.push]]` names the subscribers the node pushes its whole list to on
//! every (re)connect, whether or not their subscription ever reached it.

use ostracon_protocol::ids::Domain;
use ostracon_protocol::rtbl::{NODE_MUC_BANS_SHA256, RtblNode};
use ostracon_protocol::xml::pubsub::Subscriber;
use ostracon_store::ledger::rtbl::SubscriberCaps;
use serde::{Deserialize, Serialize};

/// Prosody's default limit on a component's stanza (`component_stanza_size_limit`, which
/// defaults to `s2s_stanza_size_limit`, 512 KiB), less room for the envelope Prosody adds.
pub(super) const DEFAULT_MAX_STANZA_BYTES: usize = 500_000;

/// `[rtbl]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtblSection {
    /// The pubsub nodes served (default: all four xmppbl.org nodes); `[]` turns the service off.
    #[serde(default = "all_nodes")]
    pub nodes: Vec<String>,
    /// Anyone may subscribe, as xmppbl.org allows. Off: only the node's own server's hosts
    /// (its domain and subdomains), its buddies' servers and `allow`.
    #[serde(default)]
    pub public: bool,
    /// More domains whose hosts (the domain and its subdomains) may subscribe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Subscribers pushed to on every (re)connect: the MUC hosts that use this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push: Vec<PushTarget>,
    /// Largest stanza the service sends, in bytes: an `items` result carries what fits, and
    /// notifications are chunked under it.
    #[serde(default = "default_max_stanza_bytes")]
    pub max_stanza_bytes: usize,
    /// Most subscriptions kept.
    #[serde(default = "default_max_subscribers")]
    pub max_subscribers: u32,
    /// Most subscriptions from one domain.
    #[serde(default = "default_max_subscribers_per_domain")]
    pub max_subscribers_per_domain: u32,
}

/// `[[rtbl.push]]`: one subscriber configured by the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushTarget {
    /// The JID that gets the notifications, e.g. `conference.example.org`.
    pub jid: String,
    /// The node (default `muc_bans_sha256`, what mod_muc_rtbl reads).
    #[serde(default = "default_push_node")]
    pub node: String,
}

fn all_nodes() -> Vec<String> {
    RtblNode::ALL.iter().map(|node| node.name().to_owned()).collect()
}

fn default_push_node() -> String {
    NODE_MUC_BANS_SHA256.to_owned()
}

fn default_max_stanza_bytes() -> usize {
    DEFAULT_MAX_STANZA_BYTES
}

fn default_max_subscribers() -> u32 {
    SubscriberCaps::default().total
}

fn default_max_subscribers_per_domain() -> u32 {
    SubscriberCaps::default().per_domain
}

impl Default for RtblSection {
    fn default() -> Self {
        Self {
            nodes: all_nodes(),
            public: false,
            allow: Vec::new(),
            push: Vec::new(),
            max_stanza_bytes: DEFAULT_MAX_STANZA_BYTES,
            max_subscribers: default_max_subscribers(),
            max_subscribers_per_domain: default_max_subscribers_per_domain(),
        }
    }
}

/// `[rtbl]` as the service uses it, every value checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtblSettings {
    /// The nodes served.
    pub nodes: Vec<RtblNode>,
    /// Anyone may subscribe.
    pub public: bool,
    /// Domains (with their subdomains) that may subscribe, besides buddies' servers.
    pub allow: Vec<Domain>,
    /// Subscribers pushed to on every (re)connect.
    pub push: Vec<(RtblNode, Subscriber)>,
    /// Largest stanza sent.
    pub max_stanza_bytes: usize,
    /// Caps on subscriptions.
    pub caps: SubscriberCaps,
}

impl RtblSection {
    /// The settings, or what is wrong; `server_domain` (the node's own server) may always
    /// subscribe.
    pub fn settings(&self, server_domain: &Domain) -> Result<RtblSettings, Vec<String>> {
        let mut problems = Vec::new();
        let mut nodes = Vec::new();
        for name in &self.nodes {
            match RtblNode::from_name(name) {
                Some(node) if !nodes.contains(&node) => nodes.push(node),
                Some(_) => problems.push(format!("[rtbl] nodes names {name} twice")),
                None => problems.push(format!(
                    "[rtbl] nodes: {name:?} is not one of {}",
                    RtblNode::ALL.map(RtblNode::name).join(", ")
                )),
            }
        }
        let mut allow = vec![server_domain.clone()];
        for domain in &self.allow {
            match Domain::parse(domain) {
                Ok(domain) => allow.push(domain),
                Err(e) => problems.push(format!("[rtbl] allow: {e}")),
            }
        }
        let mut push = Vec::new();
        for target in &self.push {
            let node = RtblNode::from_name(&target.node).filter(|node| nodes.contains(node));
            match (node, Subscriber::parse(&target.jid)) {
                (Some(node), Ok(jid)) => push.push((node, jid)),
                (None, _) => problems.push(format!("[rtbl] push: node {:?} is not served (see nodes)", target.node)),
                (_, Err(e)) => problems.push(format!("[rtbl] push: jid {:?}: {e}", target.jid)),
            }
        }
        if !(4_096..=16 * 1024 * 1024).contains(&self.max_stanza_bytes) {
            problems.push(format!(
                "[rtbl] max_stanza_bytes must be between 4096 and 16 MiB (is {}); Prosody's default limit is 512 KiB",
                self.max_stanza_bytes
            ));
        }
        if self.max_subscribers == 0 || self.max_subscribers_per_domain == 0 {
            problems.push("[rtbl] max_subscribers and max_subscribers_per_domain must be at least 1".to_owned());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(RtblSettings {
            nodes,
            public: self.public,
            allow,
            push,
            max_stanza_bytes: self.max_stanza_bytes,
            caps: SubscriberCaps { total: self.max_subscribers, per_domain: self.max_subscribers_per_domain },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Domain {
        Domain::parse("example.org").unwrap()
    }

    #[test]
    fn defaults_serve_every_node_to_the_own_server_only() {
        let settings = RtblSection::default().settings(&domain()).unwrap();
        assert_eq!(settings.nodes, RtblNode::ALL);
        assert!(!settings.public);
        assert_eq!(settings.allow, [domain()]);
        assert_eq!(settings.max_stanza_bytes, DEFAULT_MAX_STANZA_BYTES);
    }

    #[test]
    fn bad_values_are_named() {
        let section: RtblSection = toml::from_str(
            r#"
            nodes = ["muc_bans_sha256", "nope"]
            allow = ["not a domain"]
            max_stanza_bytes = 100
            [[push]]
            jid = "conference.example.org"
            node = "spam_source_ips"
            "#,
        )
        .unwrap();
        let problems = section.settings(&domain()).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("\"nope\"")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("spam_source_ips")), "a push to a node not served: {problems:?}");
        let pushed: RtblSection = toml::from_str("[[push]]\njid = \"conference.example.org\"\n").unwrap();
        let settings = pushed.settings(&domain()).unwrap();
        assert_eq!(settings.push[0].0, RtblNode::MucBansSha256, "mod_muc_rtbl's node by default");
        assert!(toml::from_str::<RtblSection>("pubic = true").is_err(), "unknown keys are refused");
    }
}
