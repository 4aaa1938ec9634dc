//! JIDs, domains, IPs, CIDRs and offenders: parse, print, parse again; printing is normal form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostracon_protocol::ids::{BareJid, Cidr, Domain, Offender};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(jid) = BareJid::parse(text) {
        assert_eq!(BareJid::parse(&jid.to_string()).unwrap(), jid);
    }
    if let Ok(domain) = Domain::parse(text) {
        assert_eq!(Domain::parse(domain.as_str()).unwrap(), domain);
    }
    if let Ok(cidr) = Cidr::parse(text) {
        assert_eq!(Cidr::parse(&cidr.to_string()).unwrap(), cidr);
    }
    if let Ok(offender) = Offender::parse(text) {
        assert_eq!(Offender::parse(&offender.to_string()).unwrap(), offender);
    }
});
