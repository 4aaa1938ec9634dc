//! The DNSBL zone (RFC 5782, spec/firewalls.md): the addresses this node lists with action
//! `block`, and optionally its blocked domains (an RHSBL), answered over UDP and TCP by
//! hickory-server.
//!
//! Answers come from an index of our own, in memory, that holds only what the zone lists: it
//! is loaded once and then follows the change feed whenever a commit changes a list, so an
//! answer reflects a change as soon as it commits. A query touches the database only for a
//! TXT answer's reason, and at most [`TXT_READS_IN_FLIGHT`] of those at once.

pub mod names;

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, NS, SOA, TXT};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use ostracon_protocol::ids::Offender;
use ostracon_store::index::BlocklistIndex;
use ostracon_store::ledger::Ledger;
use ostracon_store::model::{EntryRecord, ListAction};
use ostracon_store::traits::BlocklistStore as _;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

use crate::error::ServerError;
use names::Subject;

/// The address every listing answers (RFC 5782 section 2.1).
const LISTED: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 2);

/// TXT answers that may read the database at once; more get SERVFAIL and retry.
pub const TXT_READS_IN_FLIGHT: usize = 16;

/// An idle TCP connection is closed after this long.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// How the zone is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsblSettings {
    /// Where to listen (UDP and TCP).
    pub listen: SocketAddr,
    /// The address zone, e.g. `bl.example.org`.
    pub zone: String,
    /// The domain zone (RHSBL), if any.
    pub domain_zone: Option<String>,
    /// TTL of every answer, and the negative-caching TTL in the SOA.
    pub ttl: u32,
    /// The zone's name server, as delegated (NS and the SOA's MNAME).
    pub nameserver: String,
    /// The SOA's RNAME (a mailbox, `hostmaster.example.org`).
    pub hostmaster: String,
    /// Where TXT answers send people: `{lookup_url}/v1/lookup/ip/{address}`.
    pub lookup_url: Option<String>,
    /// The node's domain, which TXT answers name.
    pub node_domain: String,
}

/// One served zone's fixed records.
struct Zone {
    name: LowerName,
    soa: Record,
    ns: Record,
    domains: bool,
}

impl Zone {
    fn new(zone: &str, settings: &DnsblSettings, domains: bool) -> Result<Self, ServerError> {
        let name = dns_name(zone)?;
        let mname = dns_name(&settings.nameserver)?;
        let rname = dns_name(&settings.hostmaster)?;
        let soa = SOA::new(mname.clone(), rname, 1, 3600, 600, 86_400, settings.ttl);
        Ok(Self {
            soa: Record::from_rdata(name.clone(), settings.ttl, RData::SOA(soa)),
            ns: Record::from_rdata(name.clone(), settings.ttl, RData::NS(NS(mname))),
            name: LowerName::from(&name),
            domains,
        })
    }
}

fn dns_name(text: &str) -> Result<Name, ServerError> {
    let mut name = Name::from_str(text).map_err(|e| ServerError::Config(format!("[dnsbl] {text:?}: {e}")))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The answering side: the zones and the index.
struct Dnsbl {
    zones: Vec<Zone>,
    listed: Arc<RwLock<BlocklistIndex>>,
    ledger: Arc<Ledger>,
    txt_reads: Semaphore,
    settings: DnsblSettings,
}

/// What a lookup found.
enum Found {
    /// Listed: the entry, or `None` for the RFC 5782 test entry.
    Listed(Option<i64>),
    Unlisted,
}

impl Dnsbl {
    fn find(&self, subject: &Subject) -> Found {
        let index = self.listed.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let hit = match subject {
            Subject::Ip(ip) if names::is_test_listed(*ip) => return Found::Listed(None),
            Subject::Ip(ip) if names::is_test_unlisted(*ip) => return Found::Unlisted,
            Subject::Ip(ip) => index.lookup_ip(*ip).first().map(|(_, id)| *id),
            Subject::Domain(domain) if domain.as_str() == "test" => return Found::Listed(None),
            Subject::Domain(domain) => index.lookup_domain(domain).first().map(|(_, id)| *id),
            Subject::Apex | Subject::Nothing => None,
        };
        hit.map_or(Found::Unlisted, |id| Found::Listed(Some(id)))
    }

    async fn reason(&self, entry: Option<i64>, subject: &Subject) -> Result<String, ()> {
        let Some(id) = entry else { return Ok("RFC 5782 test entry".to_owned()) };
        let _permit = self.txt_reads.try_acquire().map_err(|_| ())?;
        let entry = self.ledger.store().entries_by_id(&[id]).await.map_err(|_| ())?;
        let source = entry.first().map_or("listed", |e| e.source.as_str());
        let (kind, value) = match subject {
            Subject::Ip(ip) => ("ip", ip.to_string()),
            Subject::Domain(domain) => ("domain", domain.to_string()),
            Subject::Apex | Subject::Nothing => ("ip", String::new()),
        };
        let see = self
            .settings
            .lookup_url
            .as_deref()
            .map(|url| format!("; see {}/v1/lookup/{kind}/{value}", url.trim_end_matches('/')))
            .unwrap_or_default();
        Ok(format!("Listed by {} ({source}){see}", self.settings.node_domain))
    }

    /// The answer to one question: its code, answers and whether to add the SOA.
    async fn answer(&self, name: &LowerName, qtype: RecordType) -> (ResponseCode, Vec<Record>, bool) {
        let Some(zone) = self.zone_for(name) else {
            return (ResponseCode::Refused, Vec::new(), false);
        };
        let below = usize::from(name.num_labels() - zone.name.num_labels());
        let query_name = Name::from(name.clone());
        let labels: Vec<&[u8]> = query_name.iter().take(below).collect();
        let subject = if zone.domains { names::domain_subject(&labels) } else { names::address_subject(&labels) };
        if subject == Subject::Apex {
            let answers = match qtype {
                RecordType::SOA => vec![zone.soa.clone()],
                RecordType::NS => vec![zone.ns.clone()],
                RecordType::ANY => vec![zone.soa.clone(), zone.ns.clone()],
                _ => Vec::new(),
            };
            let empty = answers.is_empty();
            return (ResponseCode::NoError, answers, empty);
        }
        let Found::Listed(entry) = self.find(&subject) else {
            return (ResponseCode::NXDomain, Vec::new(), true);
        };
        let ttl = self.settings.ttl;
        let a = || Record::from_rdata(query_name.clone(), ttl, RData::A(A(LISTED)));
        let answers = match qtype {
            RecordType::A => vec![a()],
            RecordType::TXT | RecordType::ANY => {
                let Ok(reason) = self.reason(entry, &subject).await else {
                    return (ResponseCode::ServFail, Vec::new(), false);
                };
                let txt = Record::from_rdata(query_name.clone(), ttl, RData::TXT(TXT::new(vec![reason])));
                if qtype == RecordType::ANY { vec![a(), txt] } else { vec![txt] }
            }
            _ => Vec::new(),
        };
        let empty = answers.is_empty();
        (ResponseCode::NoError, answers, empty)
    }

    /// The most specific served zone holding `name`.
    fn zone_for(&self, name: &LowerName) -> Option<&Zone> {
        self.zones.iter().filter(|zone| zone.name.zone_of(name)).max_by_key(|z| z.name.num_labels())
    }
}

#[async_trait::async_trait]
impl RequestHandler for Dnsbl {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        // RFC 6891: an OPT record in the answer exactly when the query had one.
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns
        });
        let (code, answers, soa) = if request.metadata.op_code != OpCode::Query {
            (ResponseCode::NotImp, Vec::new(), None)
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            (ResponseCode::BADVERS, Vec::new(), None)
        } else {
            match request.request_info() {
                // Not exactly one question.
                Err(_) => (ResponseCode::FormErr, Vec::new(), None),
                Ok(info) if info.query.query_class() != DNSClass::IN => (ResponseCode::Refused, Vec::new(), None),
                Ok(info) => {
                    let name = info.query.name();
                    let (code, answers, with_soa) = self.answer(name, info.query.query_type()).await;
                    (code, answers, with_soa.then(|| self.zone_for(name).map(|zone| zone.soa.clone())).flatten())
                }
            }
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = code;
        metadata.authoritative = matches!(code, ResponseCode::NoError | ResponseCode::NXDomain);
        let message = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answers.iter(),
            [],
            soa.as_ref(),
            [],
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "DNSBL answer not sent");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
            }
        }
    }
}

/// Whether an entry belongs in the zone.
fn served(entry: &EntryRecord, domains: bool, now: ostracon_protocol::time::Timestamp) -> bool {
    let kind_served = match entry.offender {
        Offender::Ip(_) | Offender::Cidr(_) => true,
        Offender::Domain(_) => domains,
        _ => false,
    };
    kind_served && entry.active && entry.action == ListAction::Block && entry.expires_at.is_none_or(|until| until > now)
}

/// Keeps `listed` equal to what the zone serves: a full load, then every change as it commits.
async fn follow_lists(
    ledger: Arc<Ledger>,
    env: Arc<dyn ostracon_store::clock::Environment>,
    listed: Arc<RwLock<BlocklistIndex>>,
    domains: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let mut lists = ledger.watch_lists();
    let store = ledger.store().clone();
    let mut through = -1;
    loop {
        if through < 0 || through < store.pruned_through().await? {
            // Read the feed's end first: what commits meanwhile is applied again, never missed.
            let end = store.last_change_seq().await?;
            let now = env.now();
            let mut index = BlocklistIndex::new();
            for entry in store.active_entries().await?.iter().filter(|e| served(e, domains, now)) {
                index.insert(&entry.offender, entry.id);
            }
            *listed.write().unwrap_or_else(std::sync::PoisonError::into_inner) = index;
            through = end;
        }
        loop {
            let changes = store.changes_since(through, None, 1_000).await?;
            let Some(last) = changes.last().map(|c| c.seq) else { break };
            let now = env.now();
            for change in &changes {
                let entry = store.entry(&change.offender).await?;
                let mut index = listed.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                match entry.filter(|entry| served(entry, domains, now)) {
                    Some(entry) => index.insert(&entry.offender, entry.id),
                    None => {
                        index.remove(&change.offender);
                    }
                }
            }
            through = last;
        }
        tokio::select! {
            changed = lists.changed() => if changed.is_err() { return Ok(()) },
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Serves the zone until `stop`; the index follows the lists meanwhile.
pub async fn run(
    settings: DnsblSettings,
    ledger: Arc<Ledger>,
    env: Arc<dyn ostracon_store::clock::Environment>,
    udp: UdpSocket,
    tcp: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let mut zones = vec![Zone::new(&settings.zone, &settings, false)?];
    if let Some(domain_zone) = &settings.domain_zone {
        zones.push(Zone::new(domain_zone, &settings, true)?);
    }
    let listed = Arc::new(RwLock::new(BlocklistIndex::new()));
    let follower = tokio::spawn(follow_lists(
        Arc::clone(&ledger),
        env,
        Arc::clone(&listed),
        settings.domain_zone.is_some(),
        stop.clone(),
    ));
    let handler = Dnsbl { zones, listed, ledger, txt_reads: Semaphore::new(TXT_READS_IN_FLIGHT), settings };
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE, 32);
    let shutdown = server.shutdown_token().clone();
    tokio::select! {
        result = server.block_until_done() => {
            follower.abort();
            result.map_err(|e| ServerError::Dns(e.to_string()))
        }
        _ = stop.changed() => {
            shutdown.cancel();
            let _ = follower.await;
            Ok(())
        }
    }
}

/// Binds the zone's UDP socket and TCP listener.
pub async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), ServerError> {
    let failed = |source| ServerError::DnsBind { address: listen, source };
    let udp = UdpSocket::bind(listen).await.map_err(failed)?;
    let tcp = TcpListener::bind(listen).await.map_err(failed)?;
    Ok((udp, tcp))
}
