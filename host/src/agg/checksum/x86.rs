//! The batch MD5's SIMD kernels: one MD5 block of 8 messages at once (AVX2, a `u32` lane of
//! a 256-bit register each) or of 16 (AVX-512F, 512-bit registers). The caller hands over
//! the state word by word (`state[i][lane]`, a stack array) and a reference to each lane's
//! next block (`&[u8; 64]`, in the message or in the lane's padding); the kernels load
//! those 64 bytes each, transpose the blocks in registers so that register `w` holds
//! message word `w` of every lane, do the arithmetic and store the state back. They read
//! nothing but the blocks they are given.
//!
//! A kernel exists only as a value of [`Avx2`] or [`Avx512`], made by `detect` on a CPU that
//! has the instruction set; their safe `compress` is the only way in.

#![allow(
    unsafe_code,
    reason = "calling #[target_feature] functions and register loads/stores need unsafe"
)]

use std::arch::x86_64::{
    __m256i, __m512i, _mm256_add_epi32, _mm256_and_si256, _mm256_loadu_si256, _mm256_or_si256,
    _mm256_permute2x128_si256, _mm256_set1_epi32, _mm256_slli_epi32, _mm256_srli_epi32,
    _mm256_storeu_si256, _mm256_unpackhi_epi32, _mm256_unpackhi_epi64, _mm256_unpacklo_epi32,
    _mm256_unpacklo_epi64, _mm256_xor_si256, _mm512_add_epi32, _mm512_loadu_si512,
    _mm512_rol_epi32, _mm512_set1_epi32, _mm512_shuffle_i32x4, _mm512_storeu_si512,
    _mm512_ternarylogic_epi32, _mm512_unpackhi_epi32, _mm512_unpackhi_epi64, _mm512_unpacklo_epi32,
    _mm512_unpacklo_epi64,
};

use super::lanes::BLOCK;

/// AVX2 is there: [`Avx2::compress`] hashes 8 lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::agg) struct Avx2(());

/// AVX-512F is there: [`Avx512::compress`] hashes 16 lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::agg) struct Avx512(());

impl Avx2 {
    pub(super) fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Self(()))
    }

    /// One MD5 block of each of 8 lanes.
    pub(super) fn compress(self, state: &mut [[u32; 8]; 4], blocks: &[&[u8; BLOCK]; 8]) {
        // SAFETY: an `Avx2` is only made by `detect`, after the CPU reported AVX2, the one
        // instruction set `compress_avx2` is compiled for.
        unsafe { compress_avx2(state, blocks) }
    }
}

impl Avx512 {
    pub(super) fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx512f").then_some(Self(()))
    }

    /// One MD5 block of each of 16 lanes.
    pub(super) fn compress(self, state: &mut [[u32; 16]; 4], blocks: &[&[u8; BLOCK]; 16]) {
        // SAFETY: an `Avx512` is only made by `detect`, after the CPU reported AVX-512F,
        // the one instruction set `compress_avx512` is compiled for.
        unsafe { compress_avx512(state, blocks) }
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load8(a: &[u32; 8]) -> __m256i {
    // SAFETY: `a` is 32 readable bytes, the size of the load, which needs no alignment.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load8_bytes(a: &[u8; 32]) -> __m256i {
    // SAFETY: `a` is 32 readable bytes, the size of the load, which needs no alignment.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn store8(a: &mut [u32; 8], v: __m256i) {
    // SAFETY: `a` is 32 writable bytes, the size of the store, which needs no alignment.
    unsafe { _mm256_storeu_si256(a.as_mut_ptr().cast(), v) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load16(a: &[u32; 16]) -> __m512i {
    // SAFETY: `a` is 64 readable bytes, the size of the load, which needs no alignment.
    unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load16_bytes(a: &[u8; 64]) -> __m512i {
    // SAFETY: `a` is 64 readable bytes, the size of the load, which needs no alignment.
    unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn store16(a: &mut [u32; 16], v: __m512i) {
    // SAFETY: `a` is 64 writable bytes, the size of the store, which needs no alignment.
    unsafe { _mm512_storeu_si512(a.as_mut_ptr().cast(), v) }
}

/// The 16 message words of 8 blocks, word `w` of block `l` in lane `l` of register `w`.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(blocks: &[&[u8; BLOCK]; 8]) -> [__m256i; 16] {
    let mut m = [_mm256_set1_epi32(0); 16];
    for (half, out) in m.chunks_exact_mut(8).enumerate() {
        // Row l: words 8 * half .. 8 * half + 8 of block l.
        let r: [__m256i; 8] = std::array::from_fn(|l| {
            let words = blocks[l].as_chunks::<32>().0;
            load8_bytes(&words[half])
        });
        // Per 128-bit half j: words 4j.. of rows 2k, 2k + 1 interleaved by 32, then by 64
        // bits, so that u[4k + q] holds word 4j + q of rows 4k..4k + 4 in its half j.
        let t: [__m256i; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_epi32(a, b)
            } else {
                _mm256_unpackhi_epi32(a, b)
            }
        });
        let u: [__m256i; 8] = std::array::from_fn(|i| {
            let (k, q) = (i / 4, i % 4);
            let (a, b) = (t[4 * k + q / 2], t[4 * k + 2 + q / 2]);
            if q % 2 == 0 {
                _mm256_unpacklo_epi64(a, b)
            } else {
                _mm256_unpackhi_epi64(a, b)
            }
        });
        for q in 0..4 {
            out[q] = _mm256_permute2x128_si256::<0x20>(u[q], u[4 + q]);
            out[4 + q] = _mm256_permute2x128_si256::<0x31>(u[q], u[4 + q]);
        }
    }
    m
}

#[target_feature(enable = "avx2")]
fn compress_avx2(state: &mut [[u32; 8]; 4], blocks: &[&[u8; BLOCK]; 8]) {
    let m = transpose8(blocks);
    let ones = _mm256_set1_epi32(-1);
    let [mut a, mut b, mut c, mut d] = [0, 1, 2, 3].map(|i| load8(&state[i]));
    let (a0, b0, c0, d0) = (a, b, c, d);
    // The round functions with the fewest operations after `b` (the newest value) is known.
    macro_rules! f {
        (F, $b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($d, _mm256_and_si256($b, _mm256_xor_si256($c, $d)))
        };
        (G, $b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($c, _mm256_and_si256($d, _mm256_xor_si256($b, $c)))
        };
        (H, $b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($b, _mm256_xor_si256($c, $d))
        };
        (I, $b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($c, _mm256_or_si256($b, _mm256_xor_si256($d, ones)))
        };
    }
    macro_rules! step {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:literal) => {
            let t = _mm256_add_epi32(
                _mm256_add_epi32($a, _mm256_add_epi32($m, _mm256_set1_epi32($k as i32))),
                f!($f, $b, $c, $d),
            );
            let rotated = _mm256_or_si256(
                _mm256_slli_epi32::<$s>(t),
                _mm256_srli_epi32::<{ 32 - $s }>(t),
            );
            $a = _mm256_add_epi32($b, rotated);
        };
    }
    md5_steps!(step, a, b, c, d, m);
    for (s, (v, v0)) in state.iter_mut().zip([(a, a0), (b, b0), (c, c0), (d, d0)]) {
        store8(s, _mm256_add_epi32(v, v0));
    }
}

/// The 16 message words of 16 blocks, word `w` of block `l` in lane `l` of register `w`.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(blocks: &[&[u8; BLOCK]; 16]) -> [__m512i; 16] {
    let r: [__m512i; 16] = std::array::from_fn(|l| load16_bytes(blocks[l]));
    // Per 128-bit quarter j: words 4j.. of rows 2k, 2k + 1 interleaved by 32, then by 64
    // bits, so that u[4k + q] holds word 4j + q of rows 4k..4k + 4 in its quarter j.
    let t: [__m512i; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(a, b)
        } else {
            _mm512_unpackhi_epi32(a, b)
        }
    });
    let u: [__m512i; 16] = std::array::from_fn(|i| {
        let (k, q) = (i / 4, i % 4);
        let (a, b) = (t[4 * k + q / 2], t[4 * k + 2 + q / 2]);
        if q % 2 == 0 {
            _mm512_unpacklo_epi64(a, b)
        } else {
            _mm512_unpackhi_epi64(a, b)
        }
    });
    // Then quarter j of u[q], u[4 + q], u[8 + q], u[12 + q] side by side: word 4j + q of
    // rows 0..16.
    let mut m = [_mm512_set1_epi32(0); 16];
    for q in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x44>(u[q], u[4 + q]);
        let v1 = _mm512_shuffle_i32x4::<0xEE>(u[q], u[4 + q]);
        let v2 = _mm512_shuffle_i32x4::<0x44>(u[8 + q], u[12 + q]);
        let v3 = _mm512_shuffle_i32x4::<0xEE>(u[8 + q], u[12 + q]);
        m[q] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
        m[4 + q] = _mm512_shuffle_i32x4::<0xDD>(v0, v2);
        m[8 + q] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
        m[12 + q] = _mm512_shuffle_i32x4::<0xDD>(v1, v3);
    }
    m
}

#[target_feature(enable = "avx512f")]
fn compress_avx512(state: &mut [[u32; 16]; 4], blocks: &[&[u8; BLOCK]; 16]) {
    let m = transpose16(blocks);
    let [mut a, mut b, mut c, mut d] = [0, 1, 2, 3].map(|i| load16(&state[i]));
    let (a0, b0, c0, d0) = (a, b, c, d);
    // Each round function is one ternary-logic instruction on (b, c, d); the immediate is
    // its truth table (b = 0xF0, c = 0xCC, d = 0xAA).
    macro_rules! f {
        (F, $b:expr, $c:expr, $d:expr) => {
            _mm512_ternarylogic_epi32::<0xCA>($b, $c, $d) // (b & c) | (!b & d)
        };
        (G, $b:expr, $c:expr, $d:expr) => {
            _mm512_ternarylogic_epi32::<0xE4>($b, $c, $d) // (b & d) | (c & !d)
        };
        (H, $b:expr, $c:expr, $d:expr) => {
            _mm512_ternarylogic_epi32::<0x96>($b, $c, $d) // b ^ c ^ d
        };
        (I, $b:expr, $c:expr, $d:expr) => {
            _mm512_ternarylogic_epi32::<0x39>($b, $c, $d) // c ^ (b | !d)
        };
    }
    macro_rules! step {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:literal) => {
            let t = _mm512_add_epi32(
                _mm512_add_epi32($a, _mm512_add_epi32($m, _mm512_set1_epi32($k as i32))),
                f!($f, $b, $c, $d),
            );
            $a = _mm512_add_epi32($b, _mm512_rol_epi32::<$s>(t));
        };
    }
    md5_steps!(step, a, b, c, d, m);
    for (s, (v, v0)) in state.iter_mut().zip([(a, a0), (b, b0), (c, c0), (d, d0)]) {
        store16(s, _mm512_add_epi32(v, v0));
    }
}
