//! The record types the kernel answers (A, AAAA): their map and how their answers are written.

use aya_ebpf::maps::HashMap;
use dns_common::{
    name::NAME_WORDS,
    records::{
        ARecords, AaaaRecords, NameKey, FLAG_NO_OTHER_TYPE, FLAG_USERSPACE_ONLY, MAX_AAAA,
        MAX_ADDRS,
    },
};

use crate::{
    answer::halves,
    packet::{write, Packet},
    DNS_A, DNS_AAAA,
};

/// A map value holding one name's records of one type.
pub trait Rrset: Sized + 'static {
    /// Most records one value holds.
    const MAX: usize;
    /// Size of one answer record: `C0 0C | type | class | TTL | RDLENGTH | RDATA`.
    const ANSWER_LEN: usize;
    /// The map of this type.
    fn map() -> &'static HashMap<NameKey, Self>;
    /// The stored lower-cased wire name.
    fn name(&self) -> &[u64; NAME_WORDS];
    /// Records in use.
    fn count(&self) -> usize;
    /// Whether userspace must answer this name (more records than `MAX`).
    fn userspace_only(&self) -> bool;
    /// Whether the name has no records of the other address type (`FLAG_NO_OTHER_TYPE`).
    fn no_other_type(&self) -> bool;
    /// Writes the first `n` (<= `MAX`) answers at `off`, rotated left by `first` (< `n`);
    /// returns the offset after them and their little-endian one's-complement partial sum, as
    /// if they started at an even offset.
    fn write_answers<P: Packet>(
        &self,
        p: &P,
        off: usize,
        n: usize,
        first: usize,
    ) -> Result<(usize, u64), u32>;
}

impl Rrset for ARecords {
    const MAX: usize = MAX_ADDRS;
    const ANSWER_LEN: usize = 16;

    #[inline(always)]
    fn map() -> &'static HashMap<NameKey, Self> {
        &DNS_A
    }
    #[inline(always)]
    fn name(&self) -> &[u64; NAME_WORDS] {
        &self.name
    }
    #[inline(always)]
    fn count(&self) -> usize {
        self.count as usize
    }
    #[inline(always)]
    fn userspace_only(&self) -> bool {
        self.flags & FLAG_USERSPACE_ONLY != 0
    }
    #[inline(always)]
    fn no_other_type(&self) -> bool {
        self.flags & FLAG_NO_OTHER_TYPE != 0
    }
    #[inline(always)]
    fn write_answers<P: Packet>(
        &self,
        p: &P,
        off: usize,
        n: usize,
        first: usize,
    ) -> Result<(usize, u64), u32> {
        let ttl = self.ttl.to_be_bytes();
        let w0 = u64::from_le_bytes([0xc0, 0x0c, 0, 1, 0, 1, ttl[0], ttl[1]]);
        let w1_lo = u32::from_le_bytes([ttl[2], ttl[3], 0, 4]) as u64;
        let w0_sum = halves(w0);
        let mut off = off;
        let mut sum = 0;
        let mut i = 0;
        while i < MAX_ADDRS && i < n {
            let addr = self.addrs_be[rotated(i, first, n, MAX_ADDRS)] as u64;
            // See the AAAA loop below.
            write(p, core::hint::black_box(off), [w0, w1_lo | addr << 32])?;
            sum += w0_sum + w1_lo + addr;
            off += Self::ANSWER_LEN;
            i += 1;
        }
        Ok((off, sum))
    }
}

impl Rrset for AaaaRecords {
    const MAX: usize = MAX_AAAA;
    const ANSWER_LEN: usize = 28;

    #[inline(always)]
    fn map() -> &'static HashMap<NameKey, Self> {
        &DNS_AAAA
    }
    #[inline(always)]
    fn name(&self) -> &[u64; NAME_WORDS] {
        &self.name
    }
    #[inline(always)]
    fn count(&self) -> usize {
        self.count as usize
    }
    #[inline(always)]
    fn userspace_only(&self) -> bool {
        self.flags & FLAG_USERSPACE_ONLY != 0
    }
    #[inline(always)]
    fn no_other_type(&self) -> bool {
        self.flags & FLAG_NO_OTHER_TYPE != 0
    }
    #[inline(always)]
    fn write_answers<P: Packet>(
        &self,
        p: &P,
        off: usize,
        n: usize,
        first: usize,
    ) -> Result<(usize, u64), u32> {
        let ttl = self.ttl.to_be_bytes();
        // C0 0C | 00 1C | 00 01 | TTL | 00 10, then the address: seven 32-bit words, one
        // bounds check.
        let w0 = u32::from_le_bytes([0xc0, 0x0c, 0, 28]);
        let w1 = u32::from_le_bytes([0, 1, ttl[0], ttl[1]]);
        let w2 = u32::from_le_bytes([ttl[2], ttl[3], 0, 16]);
        let head_sum = w0 as u64 + w1 as u64 + w2 as u64;
        let mut off = off;
        let mut sum = 0;
        let mut i = 0;
        while i < MAX_AAAA && i < n {
            let a = &self.addrs[rotated(i, first, n, MAX_AAAA)];
            // The offset through a stack slot: LLVM would otherwise turn the record offsets
            // into one running pointer and address the stores below the pointer it checked,
            // which the verifier refuses.
            write(p, core::hint::black_box(off), [w0, w1, w2, a[0], a[1], a[2], a[3]])?;
            sum += head_sum + a[0] as u64 + a[1] as u64 + a[2] as u64 + a[3] as u64;
            off += Self::ANSWER_LEN;
            i += 1;
        }
        Ok((off, sum))
    }
}

/// The index of the `i`-th answer of `n` rotated left by `first` (< `n` <= `max`, a power of
/// two): `(first + i) % n`, masked so that the verifier sees it inside the value's array.
#[inline(always)]
fn rotated(i: usize, first: usize, n: usize, max: usize) -> usize {
    let j = (first + i) as u64;
    // Without a branch (BPF has no conditional move; each branch would double the ways the
    // verifier follows through the loop): all ones when `j >= n`, from the sign of n - 1 - j.
    let past = ((n as u64).wrapping_sub(1).wrapping_sub(j) as i64 >> 63) as u64;
    (j - (n as u64 & past)) as usize & (max - 1)
}
