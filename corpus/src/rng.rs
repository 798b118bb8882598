//! A small seeded generator (SplitMix64): the corpus is the same for a seed on every platform,
//! with no dependency whose stream could change between versions.

/// SplitMix64.
pub(crate) struct Rng(u64);

/// Alphabets values are drawn from.
pub(crate) const DIGITS: &[u8] = b"0123456789";
pub(crate) const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
pub(crate) const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
pub(crate) const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub(crate) const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub(crate) const HEX: &[u8] = b"0123456789abcdef";
pub(crate) const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub(crate) const B64URL: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl Rng {
    /// The stream of one part of the corpus: each part draws from its own stream, so adding a
    /// part leaves the others' samples as they were.
    pub(crate) fn fork(seed: u64, part: u64) -> Self {
        let mut r = Self(seed ^ part.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is far below what the corpus can notice).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `1/n`.
    pub(crate) fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    /// A decimal digit in `lo..=hi`.
    pub(crate) fn digit(&mut self, lo: u8, hi: u8) -> u8 {
        lo + self.below(usize::from(hi - lo) + 1) as u8
    }

    /// `n` characters of `set`.
    pub(crate) fn string(&mut self, set: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(*self.pick(set))).collect()
    }

    /// `n` decimal digits.
    pub(crate) fn digits(&mut self, n: usize) -> String {
        self.string(DIGITS, n)
    }

    /// `n` characters of `set` holding at least one digit, one upper and one lower case letter
    /// where `set` has them (a random key of realistic length always does).
    pub(crate) fn mixed(&mut self, set: &[u8], n: usize) -> String {
        loop {
            let s = self.string(set, n);
            let has = |class: &[u8]| {
                !set.iter().any(|c| class.contains(c)) || s.bytes().any(|c| class.contains(&c))
            };
            if has(DIGITS) && has(UPPER) && has(LOWER) {
                return s;
            }
        }
    }
}
