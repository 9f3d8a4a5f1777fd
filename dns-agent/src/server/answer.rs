//! Builds the response to one DNS query from the records (pure): the behaviour contract in bytes.

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData as HRData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use crate::records::{Outcome, RData, Rcode, Records, Rr, SOA_EXPIRE, SOA_REFRESH, SOA_RETRY};

/// Largest UDP response without EDNS, and the smallest limit with it (RFC 6891 §6.2.5).
pub const MIN_UDP_LIMIT: usize = 512;
/// RR type of the EDNS pseudo-record.
pub(crate) const TYPE_OPT: u16 = 41;
/// The DO bit in the OPT record's flags.
pub(crate) const FLAG_DO: u16 = 0x8000;

/// How the query arrived: it decides the size limit of the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// A well-formed query, checked and decoded, on its way through the plugin chain.
#[derive(Clone, Debug)]
pub struct Request {
    /// The query's header.
    pub header: Header,
    pub question: Query,
    /// The query's EDNS(0) record, when it had one (version 0: others were answered BADVERS).
    pub edns: Option<Edns>,
    pub transport: Transport,
}

/// The EDNS(0) fields of a query that matter to its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The largest UDP response the client accepts (as sent: below 512 counts as 512).
    pub udp_size: u16,
    /// The DO bit.
    pub dnssec_ok: bool,
}

impl Request {
    /// The question's name as the records key it: lower-case with a trailing dot, escaped.
    pub fn key(&self) -> String {
        lookup_key(self.question.name())
    }

    /// The largest response the client accepts over this transport.
    pub fn size_limit(&self) -> usize {
        match (self.transport, &self.edns) {
            (Transport::Tcp, _) => usize::from(u16::MAX),
            (Transport::Udp, None) => MIN_UDP_LIMIT,
            (Transport::Udp, Some(e)) => MIN_UDP_LIMIT.max(usize::from(e.udp_size)),
        }
    }

    /// A response to this request with `rcode` and no records.
    pub fn reply(&self, rcode: ResponseCode) -> Message {
        let mut m = Message::new();
        m.set_header(Header::response_from_request(&self.header));
        m.set_response_code(rcode);
        m.add_query(self.question.clone());
        m
    }
}

/// What a received datagram or TCP message turns into.
#[derive(Debug)]
pub enum Parsed {
    /// A query to answer.
    Query(Request),
    /// Answered at once: malformed, not a query opcode, an EDNS version we do not speak.
    Answered(Response),
    /// Nothing to send: too short to carry an ID, or itself a response.
    Drop,
}

/// Checks and decodes `query`: what the server answers before any plugin sees it.
pub fn parse(query: &[u8], transport: Transport) -> Parsed {
    let mut decoder = BinDecoder::new(query);
    let Ok(header) = Header::read(&mut decoder) else {
        return Parsed::Drop;
    };
    if header.message_type() != MessageType::Query {
        return Parsed::Drop;
    }
    let mut reply = Reply {
        header: Header::response_from_request(&header),
        query: None,
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        opt: None,
    };
    let early = |reply: Reply| match encode(reply, transport) {
        Some(r) => Parsed::Answered(r),
        None => Parsed::Drop,
    };
    if header.op_code() != OpCode::Query {
        return early(reply.rcode(ResponseCode::NotImp));
    }
    if header.query_count() != 1 {
        return early(reply.rcode(ResponseCode::FormErr));
    }
    let Ok(question) = Query::read(&mut decoder) else {
        return early(reply.rcode(ResponseCode::FormErr));
    };
    reply.query = Some(question.clone());
    if header.answer_count() != 0 || header.name_server_count() != 0 {
        return early(reply.rcode(ResponseCode::FormErr));
    }
    let Ok(opt) = read_additionals(&mut decoder, header.additional_count()) else {
        return early(reply.rcode(ResponseCode::FormErr));
    };
    if let Some(opt) = opt {
        if opt.version != 0 {
            reply.opt = Some((opt, (u16::from(ResponseCode::BADVERS) >> 4) as u8));
            reply.header.set_response_code(ResponseCode::BADVERS);
            return early(reply);
        }
    }
    Parsed::Query(Request {
        header,
        question,
        edns: opt.map(|o| Edns {
            udp_size: o.udp_size,
            dnssec_ok: o.dnssec_ok,
        }),
        transport,
    })
}

/// Encodes the answer `msg` to `req`: the request's ID, opcode, RD flag and question, the
/// answer's flags, RCODE and sections, the query's OPT echoed (any OPT in `msg` is dropped);
/// truncated (TC=1, question and OPT only) when larger than the client accepts.
pub fn finish(req: &Request, msg: &Message) -> Option<Response> {
    encode_answer(
        req,
        msg.header(),
        msg.response_code(),
        msg.answers().to_vec(),
        msg.name_servers().to_vec(),
        msg.additionals().to_vec(),
    )
}

/// [`finish`] taking the answer by value: its records move into the response unclones.
pub fn finish_owned(req: &Request, mut msg: Message) -> Option<Response> {
    let header = *msg.header();
    let rcode = msg.response_code();
    let (answers, authority, additional) = (
        msg.take_answers(),
        msg.take_name_servers(),
        msg.take_additionals(),
    );
    encode_answer(req, &header, rcode, answers, authority, additional)
}

fn encode_answer(
    req: &Request,
    h: &Header,
    rcode: ResponseCode,
    answers: Vec<Record>,
    authority: Vec<Record>,
    mut additional: Vec<Record>,
) -> Option<Response> {
    let mut header = Header::response_from_request(&req.header);
    header.set_authoritative(h.authoritative());
    header.set_recursion_available(h.recursion_available());
    header.set_authentic_data(h.authentic_data());
    header.set_checking_disabled(h.checking_disabled());
    header.set_truncated(h.truncated());
    header.set_response_code(rcode);
    let opt = req.edns.map(|e| {
        let opt = Opt {
            udp_size: e.udp_size,
            version: 0,
            dnssec_ok: e.dnssec_ok,
        };
        (opt, (u16::from(rcode) >> 4) as u8)
    });
    additional.retain(|r| r.record_type() != RecordType::OPT);
    let reply = Reply {
        header,
        query: Some(req.question.clone()),
        answers,
        authority,
        additional,
        opt,
    };
    encode(reply, req.transport)
}

/// The response to `query` from the records alone (the `kubernetes` plugin as the whole
/// chain), or `None` when nothing must be sent.
pub fn respond(query: &[u8], records: &Records, transport: Transport) -> Option<Response> {
    match parse(query, transport) {
        Parsed::Drop => None,
        Parsed::Answered(r) => Some(r),
        Parsed::Query(req) => {
            let msg =
                from_records(&req, records).unwrap_or_else(|| req.reply(ResponseCode::Refused));
            finish_owned(&req, msg)
        }
    }
}

/// The authoritative answer of the records to `req`, or `None` when the question is not in
/// their zones (or falls through): the next plugin's turn.
pub fn from_records(req: &Request, records: &Records) -> Option<Message> {
    let question = &req.question;
    let key = req.key();
    if question.query_class() != DNSClass::IN
        || matches!(question.query_type(), RecordType::AXFR | RecordType::IXFR)
    {
        // Only questions in our zones get this answer; others go on down the chain.
        records.zone_of(&key)?;
        return Some(req.reply(ResponseCode::Refused));
    }
    let res = match records.resolve(&key, u16::from(question.query_type())) {
        Outcome::NotOurs => return None,
        Outcome::Answer(res) => res,
    };
    let qname = question.name();
    let mut msg = req.reply(match res.rcode {
        Rcode::NoError => ResponseCode::NoError,
        Rcode::NxDomain => ResponseCode::NXDomain,
        Rcode::ServFail => ResponseCode::ServFail,
    });
    msg.set_authoritative(true);
    for rr in &res.answers {
        msg.add_answer(record(records, qname, rr)?);
    }
    for rr in &res.additional {
        msg.add_additional(record(records, qname, rr)?);
    }
    if msg.answers().is_empty() {
        msg.add_name_server(soa_record(records, &res.zone, name(&res.zone)?)?);
    }
    Some(msg)
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
