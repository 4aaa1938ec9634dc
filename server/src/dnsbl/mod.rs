//! The DNSBL zone (RFC 5782, spec/firewalls.md): the addresses this node lists with action
//! `block`, and optionally its blocked domains (an RHSBL), answered over UDP and TCP by
//! hickory-server.
//!
//! Answers come from an index of our own, in memory, that holds only what the zone lists: it
//! is loaded once and then follows the change feed whenever a commit changes a list, so an
//! answer reflects a change as soon as it commits. A query touches the database only for a
//! TXT answer's reason, and at most [`TXT_READS_IN_FLIGHT`] of those at once.
//!
//! UDP, where nearly every query arrives, is read by threads of our own, one per core, that
//! decode, answer and encode each datagram with hickory-proto without leaving the thread:
//! hickory-server's UDP loop spawns a task and crosses a channel per query, and the wake-ups
//! that costs held it to a third of rbldnsd's rate (BENCHMARKS.md). Only a TXT answer, which
//! reads the database, goes to the runtime. TCP is served by hickory-server; both paths share
//! [`Dnsbl::reply_now`], so they answer alike.

pub mod names;

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, NS, SOA, TXT};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinDecodable as _, BinDecoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use ostracon_protocol::ids::Offender;
use ostracon_store::index::BlocklistIndex;
use ostracon_store::ledger::Ledger;
use ostracon_store::model::{EntryRecord, ListAction};
use ostracon_store::traits::BlocklistStore as _;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ServerError;
use names::Subject;

/// The address every listing answers (RFC 5782 section 2.1).
const LISTED: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 2);

/// TXT answers that may read the database at once; more get SERVFAIL and retry.
pub const TXT_READS_IN_FLIGHT: usize = 16;

/// An idle TCP connection is closed after this long.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// How often a UDP thread that has nothing to read looks whether the zone is stopping.
const UDP_STOP_CHECK: Duration = Duration::from_millis(250);

/// Largest datagram read; a DNS query over UDP is far smaller (RFC 6891 allows 4096 with EDNS).
const UDP_READ_BYTES: usize = 4096;

/// The UDP answer size when the query carries no EDNS (RFC 1035 section 4.2.1).
const UDP_PLAIN_BYTES: usize = 512;

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
    txt_reads: Arc<Semaphore>,
    settings: DnsblSettings,
}

/// What the zone says to one query, before it is encoded.
struct Reply {
    code: ResponseCode,
    answers: Vec<Record>,
    /// The zone's SOA, in the authority section of a negative or empty answer.
    soa: Option<Record>,
}

impl Reply {
    fn bare(code: ResponseCode) -> Self {
        Self { code, answers: Vec::new(), soa: None }
    }
}

/// A TXT answer (or ANY) for a listed name, which must read the entry's reason first.
struct TxtWanted {
    entry: Option<i64>,
    subject: Subject,
    name: Name,
    qtype: RecordType,
}

/// A reply, ready or waiting on the database.
enum Step {
    Ready(Reply),
    Txt(TxtWanted),
}

/// One query's question, when it has exactly one.
struct Question<'a> {
    name: &'a LowerName,
    qtype: RecordType,
    class: DNSClass,
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

    /// The reply to a query from its opcode, its EDNS version and its question (`None` unless
    /// it has exactly one), without waiting on anything, or the TXT answer that must read the
    /// database first ([`Dnsbl::reply_txt`]).
    fn reply_now(&self, op_code: OpCode, edns_version: Option<u8>, question: Option<Question<'_>>) -> Step {
        if op_code != OpCode::Query {
            return Step::Ready(Reply::bare(ResponseCode::NotImp));
        }
        if edns_version.is_some_and(|version| version > 0) {
            return Step::Ready(Reply::bare(ResponseCode::BADVERS));
        }
        let Some(question) = question else { return Step::Ready(Reply::bare(ResponseCode::FormErr)) };
        if question.class != DNSClass::IN {
            return Step::Ready(Reply::bare(ResponseCode::Refused));
        }
        let name = question.name;
        let Some(zone) = self.zone_for(name) else {
            return Step::Ready(Reply::bare(ResponseCode::Refused));
        };
        let with_soa = |code, answers: Vec<Record>| {
            let soa = answers.is_empty().then(|| zone.soa.clone());
            Reply { code, answers, soa }
        };
        let below = usize::from(name.num_labels() - zone.name.num_labels());
        let query_name = Name::from(name.clone());
        let labels: Vec<&[u8]> = query_name.iter().take(below).collect();
        let subject = if zone.domains { names::domain_subject(&labels) } else { names::address_subject(&labels) };
        if subject == Subject::Apex {
            let answers = match question.qtype {
                RecordType::SOA => vec![zone.soa.clone()],
                RecordType::NS => vec![zone.ns.clone()],
                RecordType::ANY => vec![zone.soa.clone(), zone.ns.clone()],
                _ => Vec::new(),
            };
            return Step::Ready(with_soa(ResponseCode::NoError, answers));
        }
        let Found::Listed(entry) = self.find(&subject) else {
            return Step::Ready(with_soa(ResponseCode::NXDomain, Vec::new()));
        };
        match question.qtype {
            RecordType::A => Step::Ready(with_soa(ResponseCode::NoError, vec![self.listed_a(query_name)])),
            RecordType::TXT | RecordType::ANY => {
                Step::Txt(TxtWanted { entry, subject, name: query_name, qtype: question.qtype })
            }
            _ => Step::Ready(with_soa(ResponseCode::NoError, Vec::new())),
        }
    }

    /// Finishes a TXT answer under a permit from [`Dnsbl::txt_reads`].
    async fn reply_txt(&self, wanted: TxtWanted, _permit: OwnedSemaphorePermit) -> Reply {
        let Ok(reason) = self.reason(wanted.entry, &wanted.subject).await else {
            return Reply::bare(ResponseCode::ServFail);
        };
        let txt = Record::from_rdata(wanted.name.clone(), self.settings.ttl, RData::TXT(TXT::new(vec![reason])));
        let answers = if wanted.qtype == RecordType::ANY { vec![self.listed_a(wanted.name), txt] } else { vec![txt] };
        Reply { code: ResponseCode::NoError, answers, soa: None }
    }

    /// The reply, waiting for the database if a TXT answer needs it and a permit is free.
    async fn reply(&self, op_code: OpCode, edns_version: Option<u8>, question: Option<Question<'_>>) -> Reply {
        match self.reply_now(op_code, edns_version, question) {
            Step::Ready(reply) => reply,
            Step::Txt(wanted) => match Arc::clone(&self.txt_reads).try_acquire_owned() {
                Ok(permit) => self.reply_txt(wanted, permit).await,
                Err(_) => Reply::bare(ResponseCode::ServFail),
            },
        }
    }

    fn listed_a(&self, name: Name) -> Record {
        Record::from_rdata(name, self.settings.ttl, RData::A(A(LISTED)))
    }

    /// The most specific served zone holding `name`.
    fn zone_for(&self, name: &LowerName) -> Option<&Zone> {
        self.zones.iter().filter(|zone| zone.name.zone_of(name)).max_by_key(|z| z.name.num_labels())
    }
}

/// The zone as hickory-server's handler, for TCP.
struct TcpHandler(Arc<Dnsbl>);

#[async_trait::async_trait]
impl RequestHandler for TcpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let info = request.request_info().ok();
        let question = info.as_ref().map(|info| Question {
            name: info.query.name(),
            qtype: info.query.query_type(),
            class: info.query.query_class(),
        });
        let edns_version = request.edns.as_ref().map(Edns::version);
        let reply = self.0.reply(request.metadata.op_code, edns_version, question).await;
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.code;
        metadata.authoritative = matches!(reply.code, ResponseCode::NoError | ResponseCode::NXDomain);
        let edns = request.edns.as_ref().map(answering_edns);
        let message = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            reply.answers.iter(),
            [],
            reply.soa.as_ref(),
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

/// RFC 6891: an OPT record in the answer exactly when the query had one.
fn answering_edns(asked: &Edns) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(asked.max_payload().max(512));
    edns
}

/// Answers UDP queries on this thread until `stop`: read, answer from memory, write. A TXT
/// answer is finished on `runtime`, which writes it.
fn serve_udp(
    socket: Arc<std::net::UdpSocket>,
    dnsbl: Arc<Dnsbl>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) {
    let mut buffer = [0_u8; UDP_READ_BYTES];
    while !stop.load(Ordering::Relaxed) {
        let (length, client) = match socket.recv_from(&mut buffer) {
            Ok(read) => read,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(error) => {
                // An ICMP error from an earlier answer's client, for instance: never fatal.
                tracing::debug!(%error, "DNSBL UDP read failed");
                continue;
            }
        };
        let Ok(request) = Message::from_vec(&buffer[..length]) else {
            // A header we can read gets FORMERR; fewer than twelve bytes are not a query.
            let mut decoder = BinDecoder::new(&buffer[..length]);
            if let Ok(header) = Header::read(&mut decoder) {
                let reply = Message::error_msg(header.metadata.id, header.metadata.op_code, ResponseCode::FormErr);
                send_udp(&socket, client, reply);
            }
            continue;
        };
        let question = (request.queries.len() == 1).then(|| &request.queries[0]);
        let name = question.map(|q| LowerName::from(q.name()));
        let question = question.zip(name.as_ref()).map(|(query, name)| Question {
            name,
            qtype: query.query_type(),
            class: query.query_class(),
        });
        let edns_version = request.edns.as_ref().map(Edns::version);
        match dnsbl.reply_now(request.metadata.op_code, edns_version, question) {
            Step::Ready(reply) => send_udp(&socket, client, response_to(&request, reply)),
            Step::Txt(wanted) => match Arc::clone(&dnsbl.txt_reads).try_acquire_owned() {
                Ok(permit) => {
                    let (socket, dnsbl) = (Arc::clone(&socket), Arc::clone(&dnsbl));
                    runtime.spawn(async move {
                        let reply = dnsbl.reply_txt(wanted, permit).await;
                        // A blocking write from the runtime: a UDP send only waits for room in
                        // the socket's buffer, and TXT answers are few.
                        send_udp(&socket, client, response_to(&request, reply));
                    });
                }
                Err(_) => send_udp(&socket, client, response_to(&request, Reply::bare(ResponseCode::ServFail))),
            },
        }
    }
}

/// The response message to `request`.
fn response_to(request: &Message, reply: Reply) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.response_code = reply.code;
    response.metadata.authoritative = matches!(reply.code, ResponseCode::NoError | ResponseCode::NXDomain);
    response.add_queries(request.queries.iter().cloned());
    response.add_answers(reply.answers);
    if let Some(soa) = reply.soa {
        response.add_authority(soa);
    }
    if let Some(asked) = &request.edns {
        response.set_edns(answering_edns(asked));
    }
    response
}

/// Encodes and sends one answer, truncated (TC set) if it exceeds what the client accepts.
fn send_udp(socket: &std::net::UdpSocket, client: SocketAddr, response: Message) {
    let limit = response.edns.as_ref().map_or(UDP_PLAIN_BYTES, |edns| usize::from(edns.max_payload()));
    let bytes = match response.to_vec() {
        Ok(bytes) if bytes.len() > limit => response.truncate().to_vec(),
        encoded => encoded,
    };
    match bytes {
        Ok(bytes) => {
            if let Err(error) = socket.send_to(&bytes, client) {
                tracing::debug!(%error, %client, "DNSBL answer not sent");
            }
        }
        Err(error) => tracing::warn!(%error, "DNSBL answer not encoded"),
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
                    Some(entry) => {
                        index.insert(&entry.offender, entry.id);
                    }
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
    let dnsbl =
        Arc::new(Dnsbl { zones, listed, ledger, txt_reads: Arc::new(Semaphore::new(TXT_READS_IN_FLIGHT)), settings });
    let udp = udp.into_std().map_err(|e| ServerError::Dns(e.to_string()))?;
    udp.set_nonblocking(false)
        .and_then(|()| udp.set_read_timeout(Some(UDP_STOP_CHECK)))
        .map_err(|e| ServerError::Dns(e.to_string()))?;
    let udp = Arc::new(udp);
    let stopping = Arc::new(AtomicBool::new(false));
    let readers = std::thread::available_parallelism().map_or(1, usize::from);
    let mut threads = Vec::with_capacity(readers);
    for number in 0..readers {
        let (socket, dnsbl, stopping) = (Arc::clone(&udp), Arc::clone(&dnsbl), Arc::clone(&stopping));
        let runtime = tokio::runtime::Handle::current();
        let thread = std::thread::Builder::new()
            .name(format!("dnsbl-udp-{number}"))
            .spawn(move || serve_udp(socket, dnsbl, runtime, stopping))
            .map_err(|e| ServerError::Dns(e.to_string()))?;
        threads.push(thread);
    }
    let mut server = Server::new(TcpHandler(dnsbl));
    server.register_listener(tcp, TCP_IDLE, 32);
    let shutdown = server.shutdown_token().clone();
    let result = tokio::select! {
        result = server.block_until_done() => {
            follower.abort();
            result.map_err(|e| ServerError::Dns(e.to_string()))
        }
        _ = stop.changed() => {
            shutdown.cancel();
            let _ = follower.await;
            Ok(())
        }
    };
    stopping.store(true, Ordering::Relaxed);
    // Each thread sees the flag within one read timeout.
    let _ = tokio::task::spawn_blocking(move || threads.into_iter().for_each(|thread| drop(thread.join()))).await;
    result
}

/// Binds the zone's UDP socket and TCP listener.
pub async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), ServerError> {
    let failed = |source| ServerError::DnsBind { address: listen, source };
    let udp = UdpSocket::bind(listen).await.map_err(failed)?;
    let tcp = TcpListener::bind(listen).await.map_err(failed)?;
    Ok((udp, tcp))
}
