//! Queries read straight from their bytes, for answers that need no decoded message (cache
//! hits): only the plain shape — one question with an uncompressed name, at most an EDNS(0)
//! OPT record — is read; anything else is `None` and goes the decoded way ([`super::answer`]),
//! which answers it exactly as before.

use dns_common::name::MAX_NAME_LEN as MAX_NAME;

use super::answer::{Edns, FLAG_DO, MIN_UDP_LIMIT, TYPE_OPT};

/// Length of the DNS header.
pub const HEADER_LEN: usize = 12;
/// Length of the OPT record a response echoes (root owner, no options).
pub const OPT_LEN: usize = 11;
/// Most labels a name can have (255 bytes of one-byte labels).
const MAX_LABELS: usize = 128;

const FLAG_QR: u8 = 0x80;
const OPCODE_MASK: u8 = 0x78;
const FLAG_RD: u8 = 0x01;
const FLAG_CD: u8 = 0x10;

/// A plain query, borrowed from the datagram it came in.
#[derive(Clone, Debug)]
pub struct WireQuery<'a> {
    bytes: &'a [u8],
    /// End of the question (name, type, class).
    question_end: usize,
    /// Start of each label (its length byte) in `bytes`.
    label_starts: [u8; MAX_LABELS],
    labels: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

impl<'a> WireQuery<'a> {
    /// Reads `bytes` when it is a plain query: QR=0, opcode QUERY, one question whose name is
    /// uncompressed, no answer or authority records, at most one additional record and that
    /// one an EDNS version 0 OPT owned by the root.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let header = bytes.get(..HEADER_LEN)?;
        if header[2] & (FLAG_QR | OPCODE_MASK) != 0 {
            return None;
        }
        let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
        if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
            return None;
        }
        let mut label_starts = [0u8; MAX_LABELS];
        let mut labels = 0;
        let mut at = HEADER_LEN;
        loop {
            let len = usize::from(*bytes.get(at)?);
            if len == 0 {
                break;
            }
            if len > 63 || labels == MAX_LABELS {
                return None;
            }
            // Label starts fit a byte: the name lies within 12 + 255 bytes of the start.
            label_starts[labels] = u8::try_from(at - HEADER_LEN).ok()?;
            labels += 1;
            at += 1 + len;
            if at - HEADER_LEN >= MAX_NAME {
                return None;
            }
        }
        at += 1;
        let fixed = bytes.get(at..at + 4)?;
        let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
        let question_end = at + 4;
        let edns = if count(10) == 1 {
            Some(read_opt(bytes.get(question_end..)?)?)
        } else {
            None
        };
        Some(WireQuery {
            bytes,
            question_end,
            label_starts,
            labels,
            qtype,
            qclass,
            edns,
        })
    }

    /// The question as received: name in wire form, type, class.
    pub fn question(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..self.question_end]
    }

    /// The name in wire form, root label included.
    pub fn name(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..self.question_end - 4]
    }

    /// The labels from the first to the last (the root left out).
    pub fn labels(&self) -> impl DoubleEndedIterator<Item = &'a [u8]> + '_ {
        let bytes = self.bytes;
        self.label_starts[..self.labels].iter().map(move |&s| {
            let s = HEADER_LEN + usize::from(s);
            &bytes[s + 1..s + 1 + usize::from(bytes[s])]
        })
    }

    pub fn id(&self) -> [u8; 2] {
        [self.bytes[0], self.bytes[1]]
    }

    pub fn recursion_desired(&self) -> bool {
        self.bytes[2] & FLAG_RD != 0
    }

    pub fn checking_disabled(&self) -> bool {
        self.bytes[3] & FLAG_CD != 0
    }

    /// The largest UDP response the client accepts.
    pub fn udp_limit(&self) -> usize {
        self.edns.map_or(MIN_UDP_LIMIT, |e| {
            MIN_UDP_LIMIT.max(usize::from(e.udp_size))
        })
    }

    /// The name as the router keys zones: lower-case labels joined by dots, trailing dot;
    /// `None` when a label holds a byte the decoded way would escape (`\DDD`).
    pub fn zone_key<'b>(&self, buf: &'b mut [u8; MAX_NAME + 1]) -> Option<&'b str> {
        let mut len = 0;
        for label in self.labels() {
            for &b in label {
                if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return None;
                }
                buf[len] = b.to_ascii_lowercase();
                len += 1;
            }
            buf[len] = b'.';
            len += 1;
        }
        if len == 0 {
            buf[0] = b'.';
            len = 1;
        }
        std::str::from_utf8(&buf[..len]).ok()
    }
}

/// The EDNS fields of an OPT record at the start of `rr`: root owner, type OPT, version 0.
fn read_opt(rr: &[u8]) -> Option<Edns> {
    let fixed = rr.get(..OPT_LEN)?;
    if fixed[0] != 0 || u16::from_be_bytes([fixed[1], fixed[2]]) != TYPE_OPT {
        return None;
    }
    let udp_size = u16::from_be_bytes([fixed[3], fixed[4]]);
    let (version, flags) = (fixed[6], u16::from_be_bytes([fixed[7], fixed[8]]));
    let rdlen = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
    if version != 0 || rr.len() < OPT_LEN + rdlen {
        return None;
    }
    Some(Edns {
        udp_size,
        dnssec_ok: flags & FLAG_DO != 0,
    })
}

/// Appends the OPT record the decoded way echoes for `edns` (RCODE below 16: no extended bits)
/// and counts it in the header's additional count.
pub fn push_opt(out: &mut Vec<u8>, edns: Edns) {
    let [s0, s1] = edns.udp_size.to_be_bytes();
    let flags = if edns.dnssec_ok { 0x80 } else { 0 };
    out.extend_from_slice(&[0, 0, TYPE_OPT as u8, s0, s1, 0, 0, flags, 0, 0, 0]);
    let ar = u16::from_be_bytes([out[10], out[11]]).wrapping_add(1);
    out[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// The records of an encoded message, walked without decoding: for each one its section
/// (0 answer, 1 authority, 2 additional), start, end, type, the offset of its TTL and
/// whether its owner is a lone compression pointer. `None` when the bytes are not a message
/// with one question.
pub fn records(msg: &[u8]) -> Option<Vec<RecordAt>> {
    let header = msg.get(..HEADER_LEN)?;
    let count = |i: usize| usize::from(u16::from_be_bytes([header[i], header[i + 1]]));
    if count(4) != 1 {
        return None;
    }
    let mut at = skip_name(msg, HEADER_LEN)? + 4;
    let mut out = Vec::with_capacity(count(6) + count(8) + count(10));
    for (section, n) in [(0u8, count(6)), (1, count(8)), (2, count(10))] {
        for _ in 0..n {
            let start = at;
            let owner_end = skip_name(msg, at)?;
            let fixed = msg.get(owner_end..owner_end + 10)?;
            let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
            let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
            let end = owner_end + 10 + rdlen;
            if end > msg.len() {
                return None;
            }
            out.push(RecordAt {
                section,
                start,
                end,
                rtype,
                ttl_at: owner_end + 4,
                pointer_owner: owner_end - start == 2 && msg[start] & 0xC0 == 0xC0,
            });
            at = end;
        }
    }
    Some(out)
}

/// Where one record lies in an encoded message (see [`records`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordAt {
    pub section: u8,
    pub start: usize,
    pub end: usize,
    pub rtype: u16,
    pub ttl_at: usize,
    pub pointer_owner: bool,
}

/// The end of the name at `at` (after its root label or its pointer).
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len & 0xC0 {
            0xC0 => return (at + 2 <= msg.len()).then_some(at + 2),
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[&str], qtype: u16, opt: Option<[u8; OPT_LEN]>) -> Vec<u8> {
        let mut q = vec![
            0x12,
            0x34,
            0x01,
            0x10,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        for l in name {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        if let Some(opt) = opt {
            q.extend_from_slice(&opt);
        }
        q
    }

    const OPT_DO_1232: [u8; OPT_LEN] = [0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0];

    #[test]
    fn reads_a_plain_query() {
        let bytes = query(&["WWW", "Example", "org"], 28, Some(OPT_DO_1232));
        let q = WireQuery::parse(&bytes).expect("plain query");
        assert_eq!((q.qtype, q.qclass), (28, 1));
        assert_eq!(q.id(), [0x12, 0x34]);
        assert!(q.recursion_desired() && q.checking_disabled());
        assert_eq!(
            q.edns,
            Some(Edns {
                udp_size: 1232,
                dnssec_ok: true
            })
        );
        assert_eq!(q.udp_limit(), 1232);
        let labels: Vec<&[u8]> = q.labels().rev().collect();
        assert_eq!(labels, [&b"org"[..], b"Example", b"WWW"]);
        let mut buf = [0; 256];
        assert_eq!(q.zone_key(&mut buf), Some("www.example.org."));
        assert_eq!(q.name().len(), 17);
        assert_eq!(q.question().len(), 21);
    }

    #[test]
    fn the_root_is_a_name_too() {
        let bytes = query(&[], 2, None);
        let q = WireQuery::parse(&bytes).expect("plain query");
        let mut buf = [0; 256];
        assert_eq!(q.zone_key(&mut buf), Some("."));
        assert_eq!(q.labels().count(), 0);
        assert_eq!(q.udp_limit(), MIN_UDP_LIMIT);
    }

    #[test]
    fn anything_but_the_plain_shape_is_left_to_the_decoder() {
        let plain = query(&["a", "b"], 1, None);
        assert!(WireQuery::parse(&plain).is_some());
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut response = plain.clone();
        response[2] |= 0x80;
        cases.push(("a response", response));
        let mut notify = plain.clone();
        notify[2] |= 4 << 3;
        cases.push(("opcode NOTIFY", notify));
        let mut two = plain.clone();
        two[5] = 2;
        cases.push(("two questions", two));
        let mut answer = plain.clone();
        answer[7] = 1;
        cases.push(("an answer record", answer));
        cases.push(("cut short", plain[..plain.len() - 1].to_vec()));
        let mut pointer = plain.clone();
        pointer[12] = 0xC0;
        cases.push(("a compressed name", pointer));
        let mut version = query(&["a"], 1, Some(OPT_DO_1232));
        let len = version.len();
        version[len - 5] = 1;
        cases.push(("EDNS version 1", version));
        let mut not_opt = query(&["a"], 1, Some(OPT_DO_1232));
        let len = not_opt.len();
        not_opt[len - 9] = 1;
        cases.push(("an additional record that is not OPT", not_opt));
        let mut rdata = query(&["a"], 1, Some(OPT_DO_1232));
        let len = rdata.len();
        rdata[len - 1] = 4;
        cases.push(("OPT options past the end", rdata));
        let long: Vec<String> = (0..5).map(|_| "x".repeat(63)).collect();
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        cases.push(("a name over 255 bytes", query(&long, 1, None)));
        for (what, bytes) in cases {
            assert!(
                WireQuery::parse(&bytes).is_none(),
                "{what} was read as plain"
            );
        }
        let mut odd = [0; 256];
        let escaped = query(&["a b"], 1, None);
        let q = WireQuery::parse(&escaped).expect("plain query");
        assert_eq!(q.zone_key(&mut odd), None, "a byte the decoder escapes");
    }

    #[test]
    fn walks_the_records_of_a_response() {
        // Question www.example.org A, then an answer owned by a pointer to it and an
        // additional record with its owner written out.
        let mut msg = query(&["www", "example", "org"], 1, None);
        msg[2] |= 0x80;
        msg[7] = 1;
        msg[11] = 1;
        msg.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1]);
        let additional_start = msg.len();
        msg.extend_from_slice(&[1, b'x', 0xC0, 16, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 10, 0, 0, 2]);
        let rrs = records(&msg).expect("records");
        assert_eq!(rrs.len(), 2);
        assert_eq!(
            rrs[0],
            RecordAt {
                section: 0,
                start: 33,
                end: 49,
                rtype: 1,
                ttl_at: 39,
                pointer_owner: true
            }
        );
        assert_eq!(rrs[1].section, 2);
        assert_eq!(rrs[1].start, additional_start);
        assert!(!rrs[1].pointer_owner);
        assert_eq!(rrs[1].end, msg.len());
        assert!(records(&msg[..msg.len() - 1]).is_none());
    }
}
