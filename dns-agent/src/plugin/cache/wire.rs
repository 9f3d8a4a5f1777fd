//! Cache hits answered from bytes: each entry also keeps the response the decoded way encodes
//! for it (ID 0, RD clear, no OPT), with where its TTLs and address records lie; a hit copies
//! it, sets the query's ID and RD bit, lowers the TTLs and echoes the OPT. The result is the
//! decoded way's response byte for byte; whatever it could not reproduce exactly (another
//! spelling of the name, a response to truncate, a stale entry) is left to the decoded way.

use hickory_proto::op::{Header, Query};

use super::{zone_index, Cache, Entry, Inner, Key};
use crate::server::answer::{self, Request, Transport};
use crate::server::wire::{self, WireQuery, HEADER_LEN, OPT_LEN};

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;

/// How `loadbalance` can rotate the address records of an entry's answer section in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotate {
    /// At most one address record: `loadbalance` leaves the answer as it is.
    Nothing,
    /// `count` address records of `len` bytes each from `start`, last in the answer section
    /// after the CNAMEs and the other records, their owners compression pointers (nothing
    /// points into them): rotating the bytes is what re-encoding the rotated records gives.
    Block { start: u16, len: u16, count: u16 },
    /// Anything else: `loadbalance` would reorder the records; the decoded way does it.
    Reorder,
}

/// An entry's response as bytes.
#[derive(Debug)]
pub struct WireEntry {
    bytes: Box<[u8]>,
    question_end: u16,
    /// Offsets of the TTL of every record.
    ttl_at: Box<[u16]>,
    rotate: Rotate,
}

impl WireEntry {
    /// The bytes of `entry` as answer to `question`, as the decoded way renders it right when
    /// stored; `None` when the response cannot be walked (it is then only answered decoded).
    pub fn new(inner: &Inner, entry: &Entry, question: &Query) -> Option<Self> {
        let req = Request {
            header: Header::new(),
            question: question.clone(),
            edns: None,
            transport: Transport::Tcp,
        };
        let msg = inner.render(entry, entry.stored_ms, req.clone(), false);
        let bytes = answer::finish(&req, &msg)?.bytes;
        if bytes.len() > usize::from(u16::MAX) {
            return None;
        }
        let records = wire::records(&bytes)?;
        let question_end = records
            .first()
            .map_or(bytes.len(), |r| r.start)
            .try_into()
            .ok()?;
        let ttl_at = records
            .iter()
            .map(|r| u16::try_from(r.ttl_at).ok())
            .collect::<Option<_>>()?;
        let answers: Vec<_> = records.iter().filter(|r| r.section == 0).collect();
        let is_address = |t: u16| t == TYPE_A || t == TYPE_AAAA;
        let count = answers.iter().filter(|r| is_address(r.rtype)).count();
        let rotate = if count <= 1 {
            Rotate::Nothing
        } else {
            // loadbalance's order: CNAMEs, the other records, the addresses.
            let rank = |t: u16| match t {
                TYPE_CNAME => 0,
                TYPE_A | TYPE_AAAA => 2,
                _ => 1,
            };
            let ordered = answers
                .windows(2)
                .all(|w| rank(w[0].rtype) <= rank(w[1].rtype));
            let addresses = &answers[answers.len() - count..];
            let len = addresses[0].end - addresses[0].start;
            let movable = addresses
                .iter()
                .all(|r| r.pointer_owner && r.end - r.start == len);
            match (ordered && movable, u16::try_from(count)) {
                (true, Ok(count)) => Rotate::Block {
                    start: addresses[0].start as u16,
                    len: len as u16,
                    count,
                },
                _ => Rotate::Reorder,
            }
        };
        Some(WireEntry {
            bytes: bytes.into_boxed_slice(),
            question_end,
            ttl_at,
            rotate,
        })
    }

    /// The response: ID 0, RD clear, no OPT, TTLs as stored.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn question(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..usize::from(self.question_end)]
    }

    /// Appends the response to `q` to `out`, TTLs lowered by `elapsed` seconds (`None`:
    /// kept); `None` (and nothing written) when the decoded way must answer.
    fn render(
        &self,
        q: &WireQuery<'_>,
        elapsed: Option<u32>,
        rotating: bool,
        out: &mut Vec<u8>,
    ) -> Option<WireHit> {
        if self.question() != q.question() || (rotating && self.rotate == Rotate::Reorder) {
            return None;
        }
        let opt = if q.edns.is_some() { OPT_LEN } else { 0 };
        if self.bytes.len() + opt > q.udp_limit() {
            return None;
        }
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let msg = &mut out[start..];
        msg[..2].copy_from_slice(&q.id());
        msg[2] = (msg[2] & !1) | u8::from(q.recursion_desired());
        if let Some(elapsed) = elapsed {
            for &at in &*self.ttl_at {
                let at = usize::from(at);
                let ttl = u32::from_be_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
                msg[at..at + 4].copy_from_slice(&ttl.saturating_sub(elapsed).to_be_bytes());
            }
        }
        let rcode = u16::from(msg[3] & 0x0F);
        if let Some(edns) = q.edns {
            wire::push_opt(out, edns);
        }
        Some(WireHit {
            rcode,
            rotate: self.rotate,
        })
    }
}

/// A cache hit written from bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireHit {
    pub rcode: u16,
    /// Where the address records lie in the written response, for `loadbalance`.
    pub rotate: Rotate,
}

impl Rotate {
    /// Rotates the address records of `msg` left by `turn` (modulo their count), as
    /// `loadbalance` does: returns whether there was anything to rotate.
    pub fn apply(self, msg: &mut [u8], turn: impl FnOnce() -> usize) -> bool {
        let Rotate::Block { start, len, count } = self else {
            return false;
        };
        let (start, len, count) = (usize::from(start), usize::from(len), usize::from(count));
        let n = turn() % count;
        msg[start..start + len * count].rotate_left(n * len);
        true
    }
}

impl Cache {
    /// Whether hits can be answered from bytes: not when `prefetch` counts them (the decoded
    /// way does, and starts the refreshes).
    pub fn answers_from_wire(&self) -> bool {
        self.inner.policy.prefetch_amount == 0
    }

    /// Writes the answer to `q` to `out` when it is a fresh hit the bytes reproduce exactly,
    /// and counts it as the decoded way does; otherwise `None`, nothing written or counted.
    /// `rotating`: `loadbalance` runs before the cache.
    pub fn hit_wire(
        &self,
        q: &WireQuery<'_>,
        rotating: bool,
        out: &mut Vec<u8>,
    ) -> Option<WireHit> {
        let inner = &*self.inner;
        if matches!(q.qtype, TYPE_AXFR | TYPE_IXFR) || !self.answers_from_wire() {
            return None;
        }
        let zone = zone_index(&inner.zones, |z| z.holds(q.labels()))?;
        let key = Key::of_wire(q)?;
        let hash = std::hash::BuildHasher::hash_one(&inner.hasher, key.bytes());
        let now_ms = inner.clock.now_ms();
        let keep = inner.config.keepttl;
        let render = |entry: &Entry, out: &mut Vec<u8>| {
            let elapsed =
                u32::try_from(now_ms.saturating_sub(entry.stored_ms) / 1000).unwrap_or(u32::MAX);
            entry
                .wire
                .as_ref()?
                .render(q, (!keep).then_some(elapsed), rotating, out)
        };
        let window = inner.policy.stale_window_ms;
        let key = key.bytes();
        // As the decoded way looks: the success table, the denial table when the name is not
        // there (or expired past serve_stale's window).
        let (hit, table) = match inner
            .success
            .peek(hash, key, now_ms, window, |e| render(e, out))
        {
            None => (
                inner
                    .denial
                    .peek(hash, key, now_ms, window, |e| render(e, out))?,
                &inner.denial,
            ),
            Some(hit) => (hit, &inner.success),
        };
        let hit = hit?;
        inner.counters[usize::from(zone)].requests.inc();
        if let Some(m) = table.zone_metrics(zone) {
            m.hits.inc();
        }
        Some(hit)
    }
}
