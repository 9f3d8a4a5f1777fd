//! Builds the response to one DNS query from the records (pure): the behaviour contract in bytes.

use hickory_proto::op::{Header, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData as HRData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use crate::records::{Outcome, RData, Rcode, Records, Rr, SOA_EXPIRE, SOA_REFRESH, SOA_RETRY};

/// Largest UDP response without EDNS, and the smallest limit with it (RFC 6891 §6.2.5).
pub const MIN_UDP_LIMIT: usize = 512;
/// RR type of the EDNS pseudo-record.
const TYPE_OPT: u16 = 41;
/// The DO bit in the OPT record's flags.
const FLAG_DO: u16 = 0x8000;

/// How the query arrived: it decides the size limit of the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// An encoded response and its RCODE (the 12-bit value: 16 is BADVERS), for the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub bytes: Vec<u8>,
    pub rcode: u16,
}

/// The EDNS(0) fields of the query's OPT record that the response echoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Opt {
    udp_size: u16,
    version: u8,
    dnssec_ok: bool,
}

/// What goes into a response before it is encoded.
struct Reply {
    header: Header,
    query: Option<Query>,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additional: Vec<Record>,
    /// Echo an OPT (with this extended RCODE byte) when the query had one.
    opt: Option<(Opt, u8)>,
}

/// The response to `query`, or `None` when nothing must be sent (too short to carry an ID,
/// or itself a response).
pub fn respond(query: &[u8], records: &Records, transport: Transport) -> Option<Response> {
    let mut decoder = BinDecoder::new(query);
    let header = Header::read(&mut decoder).ok()?;
    if header.message_type() != MessageType::Query {
        return None;
    }
    let mut reply = Reply {
        header: Header::response_from_request(&header),
        query: None,
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        opt: None,
    };
    if header.op_code() != OpCode::Query {
        return encode(reply.rcode(ResponseCode::NotImp), transport);
    }
    if header.query_count() != 1 {
        return encode(reply.rcode(ResponseCode::FormErr), transport);
    }
    let Ok(question) = Query::read(&mut decoder) else {
        return encode(reply.rcode(ResponseCode::FormErr), transport);
    };
    reply.query = Some(question.clone());
    if header.answer_count() != 0 || header.name_server_count() != 0 {
        return encode(reply.rcode(ResponseCode::FormErr), transport);
    }
    let Ok(opt) = read_additionals(&mut decoder, header.additional_count()) else {
        return encode(reply.rcode(ResponseCode::FormErr), transport);
    };

    let key = lookup_key(question.name());
    let outcome = records.resolve(&key, u16::from(question.query_type()));
    reply.header.set_authoritative(outcome != Outcome::NotOurs);
    if let Some(opt) = opt {
        if opt.version != 0 {
            reply.opt = Some((opt, (u16::from(ResponseCode::BADVERS) >> 4) as u8));
            reply.header.set_response_code(ResponseCode::BADVERS);
            return encode(reply, transport);
        }
        reply.opt = Some((opt, 0));
    }
    if question.query_class() != DNSClass::IN
        || matches!(question.query_type(), RecordType::AXFR | RecordType::IXFR)
    {
        reply.header.set_authoritative(false);
        return encode(reply.rcode(ResponseCode::Refused), transport);
    }

    let res = match outcome {
        Outcome::NotOurs => return encode(reply.rcode(ResponseCode::Refused), transport),
        Outcome::Answer(res) => res,
    };
    let qname = question.name();
    reply.answers = res
        .answers
        .iter()
        .map(|rr| record(records, qname, rr))
        .collect::<Option<_>>()?;
    reply.additional = res
        .additional
        .iter()
        .map(|rr| record(records, qname, rr))
        .collect::<Option<_>>()?;
    reply.header.set_response_code(match res.rcode {
        Rcode::NoError => ResponseCode::NoError,
        Rcode::NxDomain => ResponseCode::NXDomain,
        Rcode::ServFail => ResponseCode::ServFail,
    });
    if reply.answers.is_empty() {
        reply.authority = vec![soa_record(records, &res.zone, name(&res.zone)?)?];
    }
    encode(reply, transport)
}

/// One record of the model as hickory's: owner `None` is the question's name as spelled.
fn record(records: &Records, qname: &Name, rr: &Rr) -> Option<Record> {
    let owner = match &rr.owner {
        None => qname.clone(),
        Some(owner) => name(owner)?,
    };
    let data = match &rr.data {
        RData::A(ip) => HRData::A(A(*ip)),
        RData::Aaaa(ip) => HRData::AAAA(AAAA(*ip)),
        RData::Cname(target) => HRData::CNAME(CNAME(name(target)?)),
        RData::Ns(target) => HRData::NS(NS(name(target)?)),
        RData::Ptr(target) => HRData::PTR(PTR(name(target)?)),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => HRData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
        RData::Txt(text) => HRData::TXT(TXT::new(vec![text.clone()])),
        RData::Soa(zone) => return soa_record(records, zone, owner),
    };
    Some(Record::from_rdata(owner, rr.ttl, data))
}

impl Reply {
    fn rcode(mut self, rcode: ResponseCode) -> Self {
        self.header.set_response_code(rcode);
        self
    }
}

/// Reads the additional section; returns the OPT record's fields if there is one. More than
/// one OPT, or an OPT not owned by the root, is malformed. Other records are skipped.
fn read_additionals(decoder: &mut BinDecoder<'_>, count: u16) -> Result<Option<Opt>, ()> {
    let mut opt = None;
    for _ in 0..count {
        let owner = Name::read(decoder).map_err(drop)?;
        let rtype = decoder.read_u16().map_err(drop)?.unverified();
        let class = decoder.read_u16().map_err(drop)?.unverified();
        let ttl = decoder.read_u32().map_err(drop)?.unverified();
        let rdlen = decoder.read_u16().map_err(drop)?.unverified();
        decoder.read_slice(rdlen as usize).map_err(drop)?;
        if rtype != TYPE_OPT {
            continue;
        }
        if opt.is_some() || !owner.is_root() {
            return Err(());
        }
        opt = Some(Opt {
            udp_size: class,
            version: (ttl >> 16) as u8,
            dnssec_ok: ttl as u16 & FLAG_DO != 0,
        });
    }
    Ok(opt)
}

/// The records' key for a question name: lower-case, dot-separated, trailing dot. Bytes that
/// cannot appear in a record name are escaped (`\DDD`), so they never match one.
pub fn lookup_key(name: &Name) -> String {
    let mut key = String::with_capacity(64);
    for label in name.iter() {
        for &b in label {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                key.push(b.to_ascii_lowercase() as char);
            } else {
                key.push_str(&format!("\\{b:03}"));
            }
        }
        key.push('.');
    }
    if key.is_empty() {
        key.push('.');
    }
    key
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok()
}

/// The SOA of `zone` (a served zone, lower-case) owned by `owner`.
fn soa_record(records: &Records, zone: &str, owner: Name) -> Option<Record> {
    let soa = SOA::new(
        name(&Records::soa_mname_of(zone))?,
        name(&Records::soa_rname_of(zone))?,
        records.serial,
        SOA_REFRESH as i32,
        SOA_RETRY as i32,
        SOA_EXPIRE as i32,
        records.ttl,
    );
    Some(Record::from_rdata(
        owner,
        records.soa_ttl(),
        HRData::SOA(soa),
    ))
}

/// Encodes `reply`; when it exceeds the transport's limit, encodes it again truncated
/// (TC=1, the question and the OPT only).
fn encode(mut reply: Reply, transport: Transport) -> Option<Response> {
    let limit = match (transport, &reply.opt) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => MIN_UDP_LIMIT,
        (Transport::Udp, Some((opt, _))) => MIN_UDP_LIMIT.max(usize::from(opt.udp_size)),
    };
    let rcode = u16::from(reply.header.response_code());
    let bytes = encode_sections(&mut reply)?;
    if bytes.len() <= limit {
        return Some(Response { bytes, rcode });
    }
    reply.header.set_truncated(true);
    reply.answers.clear();
    reply.authority.clear();
    reply.additional.clear();
    let bytes = encode_sections(&mut reply)?;
    Some(Response { bytes, rcode })
}

fn encode_sections(reply: &mut Reply) -> Option<Vec<u8>> {
    let header = &mut reply.header;
    header.set_query_count(u16::from(reply.query.is_some()));
    header.set_answer_count(u16::try_from(reply.answers.len()).ok()?);
    header.set_name_server_count(u16::try_from(reply.authority.len()).ok()?);
    header.set_additional_count(
        u16::try_from(reply.additional.len()).ok()? + u16::from(reply.opt.is_some()),
    );
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    header.emit(&mut encoder).ok()?;
    if let Some(q) = &reply.query {
        q.emit(&mut encoder).ok()?;
    }
    for record in reply
        .answers
        .iter()
        .chain(&reply.authority)
        .chain(&reply.additional)
    {
        record.emit(&mut encoder).ok()?;
    }
    if let Some((opt, ext_rcode)) = &reply.opt {
        // Root owner, type OPT, the client's UDP size, extended RCODE, version 0, only DO kept,
        // no options (RFC 6891 §6.1.2).
        encoder.emit(0).ok()?;
        encoder.emit_u16(TYPE_OPT).ok()?;
        encoder.emit_u16(opt.udp_size).ok()?;
        encoder.emit(*ext_rcode).ok()?;
        encoder.emit(0).ok()?;
        encoder
            .emit_u16(if opt.dnssec_ok { FLAG_DO } else { 0 })
            .ok()?;
        encoder.emit_u16(0).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests;
