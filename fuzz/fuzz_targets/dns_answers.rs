//! DNS answers as a server sends them over TCP (RFC 1035 §4.2.2: each message after its
//! 2-byte length), read the way the RFC 2136 target reads them once their TSIG signature
//! has been verified: as the messages of a zone transfer of `example.test.` (RFC 5936), and
//! each as the answer to a query for `www.example.test.` A and AAAA, with the CNAME,
//! delegation and names the zone uses itself that it shows.
//!
//! The answer parsers are `ipdrift::dns::rfc2136::transfer::ZoneListing` and
//! `ipdrift::dns::rfc2136::answer::{queried_rrset, answer_obstacles, zone_own_names}`.
#![no_main]

use hickory_proto::op::Message;
use hickory_proto::rr::Name;
use ipdrift::dns::rfc2136::answer::{answer_obstacles, queried_rrset, zone_own_names};
use ipdrift::dns::rfc2136::transfer::ZoneListing;
use ipdrift::model::{RecordKey, RecordType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|stream: &[u8]| {
    let zone = Name::from_ascii("example.test.").expect("a valid name");
    let owner = Name::from_ascii("www.example.test.").expect("a valid name");
    let name = ipdrift::validate::dns_name("www.example.test.").expect("a valid name");
    let zone_name = ipdrift::validate::dns_name("example.test.").expect("a valid name");
    let keys = [RecordType::A, RecordType::Aaaa].map(|rtype| RecordKey {
        name: name.clone(),
        rtype,
    });
    let mut listing = ZoneListing::new(zone);
    let mut rest = stream;
    while let [high, low, tail @ ..] = rest {
        let length = usize::from(u16::from_be_bytes([*high, *low]));
        let (message, after) = tail.split_at(length.min(tail.len()));
        rest = after;
        let Ok(message) = Message::from_vec(message) else {
            continue;
        };
        for key in &keys {
            let _ = queried_rrset(&zone_name, key, &owner, &message);
        }
        let _ = answer_obstacles(&zone_name, &name, &message);
        let _ = zone_own_names(&zone_name, &message);
        // The transfer ends at its closing SOA or at its first error, as reads do.
        if !matches!(listing.take(&message.answers), Ok(false)) {
            break;
        }
    }
    let _ = listing.into_contents();
});
