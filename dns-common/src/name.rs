//! Wire-format DNS names as the kernel sees them: lower-casing and hashing eight bytes at a time.
//!
//! A name is handled in its uncompressed wire form (length-prefixed labels ending with the root
//! label), lower-cased, zero-padded to whole 64-bit words. Label lengths are at most 63, below
//! `'A'`, so lower-casing the whole buffer never changes them.

/// Longest wire-format name (RFC 1035 §3.1), root label included.
pub const MAX_NAME_LEN: usize = 255;
/// 64-bit words needed to hold the longest name.
pub const NAME_WORDS: usize = 32;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
const SEED: u64 = 0x6a09_e667_f3bc_c908;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// ASCII-lowercases the eight bytes of `w` at once; other bytes are left as they are.
#[inline(always)]
pub const fn lower_word(w: u64) -> u64 {
    let low7 = w & !HIGHS;
    // High bit of each byte set when the byte (ignoring bit 7) is >= 'A' ...
    let ge_a = low7.wrapping_add(ONES * (0x80 - b'A' as u64));
    // ... and when it is > 'Z'.
    let gt_z = low7.wrapping_add(ONES * (0x7f - b'Z' as u64));
    let upper = (ge_a ^ gt_z) & !w & HIGHS;
    w | (upper >> 2)
}

/// One step of the name hash: folds the next (lower-cased, little-endian) word into `h`.
#[inline(always)]
pub const fn hash_step(h: u64, word: u64) -> u64 {
    let x = (h ^ word).wrapping_mul(MUL);
    x ^ (x >> 29)
}

/// Starting value of the name hash.
#[inline(always)]
pub const fn hash_start() -> u64 {
    SEED
}

/// Final mixing, after every word of the name went through [`hash_step`].
#[inline(always)]
pub const fn hash_finish(h: u64, len: u16) -> u64 {
    let x = (h ^ len as u64).wrapping_mul(MUL);
    x ^ (x >> 32)
}

/// Hash of a name held as lower-cased, zero-padded little-endian words (`len` bytes of name).
pub fn hash_words(words: &[u64; NAME_WORDS], len: u16) -> u64 {
    let n = (len as usize).div_ceil(8);
    let mut h = hash_start();
    let mut i = 0;
    while i < n && i < NAME_WORDS {
        h = hash_step(h, words[i]);
        i += 1;
    }
    hash_finish(h, len)
}

/// Packs a wire-format name into lower-cased, zero-padded little-endian words.
/// Returns `None` when the name is longer than [`MAX_NAME_LEN`].
pub fn pack_name(wire: &[u8]) -> Option<[u64; NAME_WORDS]> {
    if wire.is_empty() || wire.len() > MAX_NAME_LEN {
        return None;
    }
    let mut words = [0u64; NAME_WORDS];
    for (i, chunk) in wire.chunks(8).enumerate() {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        words[i] = lower_word(u64::from_le_bytes(b));
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_word_only_touches_ascii_capitals() {
        for b in 0u8..=255 {
            let w = u64::from_le_bytes([b, b'Z', b'@', b'[', 0x7f, 0xc1, b'A', 0]);
            let got = lower_word(w).to_le_bytes();
            let want = if b.is_ascii_uppercase() { b + 32 } else { b };
            assert_eq!(got[0], want, "byte {b:#x}");
            assert_eq!(&got[1..], &[b'z', b'@', b'[', 0x7f, 0xc1, b'a', 0]);
        }
    }

    #[test]
    fn hash_ignores_case_but_not_content() {
        let a = pack_name(b"\x03web\x07Default\x03svc\x07cluster\x05local\x00").unwrap();
        let b = pack_name(b"\x03WEB\x07default\x03SVC\x07cluster\x05LOCAL\x00").unwrap();
        let c = pack_name(b"\x03wec\x07default\x03svc\x07cluster\x05local\x00").unwrap();
        assert_eq!(a, b);
        assert_eq!(hash_words(&a, 31), hash_words(&b, 31));
        assert_ne!(hash_words(&a, 31), hash_words(&c, 31));
    }
}
