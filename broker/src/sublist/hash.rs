//! The hasher of the sublist's maps: a folded-multiply hash with a random seed per process, cheaper
//! than SipHash on short subject tokens and still seeded against crafted collisions.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

pub(super) const HK: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
pub(super) fn fold_mul(a: u64, b: u64) -> u64 {
    let f = (a as u128).wrapping_mul(b as u128);
    (f as u64) ^ ((f >> 64) as u64)
}

#[inline(always)]
pub(super) fn r64(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

#[inline(always)]
pub(super) fn r32(b: &[u8], i: usize) -> u64 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as u64
}

/// Hasher builder with two random per-instance seeds.
#[derive(Clone, Copy)]
pub(super) struct Seeded(u64, u64);

impl Seeded {
    pub(super) fn random() -> Self {
        Seeded(fastrand::u64(..), fastrand::u64(..) | 1)
    }
}

impl BuildHasher for Seeded {
    type Hasher = FoldHasher;
    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher(self.0, self.1)
    }
}

pub(super) struct FoldHasher(u64, u64);

impl Hasher for FoldHasher {
    #[inline]
    fn write(&mut self, b: &[u8]) {
        // Overlapping unaligned loads, no per-byte loop and no memcpy.
        let len = b.len();
        let mut h = self.0 ^ (len as u64).wrapping_mul(HK);
        let s = self.1;
        if len <= 16 {
            let (x, y) = if len >= 8 {
                (r64(b, 0), r64(b, len - 8))
            } else if len >= 4 {
                (r32(b, 0), r32(b, len - 4))
            } else if len > 0 {
                let x = ((b[0] as u64) << 16) | ((b[len / 2] as u64) << 8) | b[len - 1] as u64;
                (x, 0)
            } else {
                (0, 0)
            };
            h = fold_mul(x ^ h, y ^ s);
        } else {
            let mut i = 0;
            while i + 16 < len {
                h = fold_mul(r64(b, i) ^ h, r64(b, i + 8) ^ s);
                i += 16;
            }
            h = fold_mul(r64(b, len - 16) ^ h, r64(b, len - 8) ^ s.rotate_left(29));
        }
        self.0 = h;
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        // Only used as the `str` terminator: cheap mixing is enough.
        self.0 = self.0.rotate_left(8) ^ i as u64;
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.0 = fold_mul(self.0 ^ i as u64, self.1);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.0, self.1 ^ HK)
    }
}

pub(super) type FastMap<K, V> = HashMap<K, V, Seeded>;
