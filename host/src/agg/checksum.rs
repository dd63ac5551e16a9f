//! The MD5 that ends every aggregate, and that routes partition keys.
//!
//! One MD5 stream cannot use SIMD: each 64-byte block depends on the one before. Independent
//! messages can, one per SIMD lane: 16 at once with AVX-512, 8 with AVX2, 4 with SSE. A
//! GetRecords batch and a PutRecords request both carry many aggregates, so
//! [`super::decode_many`] / [`super::deaggregate_many`] and [`super::write_digests`] hash
//! theirs together. `md5-many` does both: the multi-buffer batch (instruction set chosen at
//! run time, a portable path without SIMD below SSE2) and a single-stream MD5 that is faster
//! than the `md-5` crate's. Both are checked against `md-5` in the tests, on every
//! instruction set this CPU has and on the portable path.

use md5_many::Md5Many;

use super::DIGEST_LEN;

/// MD5 of one message.
pub(super) fn md5(bytes: &[u8]) -> [u8; DIGEST_LEN] {
    md5_many::md5(bytes)
}

/// MD5 of each of `inputs` into the same place of `outputs` (which must be as long).
pub(super) fn md5_batch(inputs: &[&[u8]], outputs: &mut [[u8; DIGEST_LEN]]) {
    engine().hash_many(inputs, outputs);
}

/// The batch engine for this CPU. Detection runs once per process (`fearless_simd` caches
/// it); tests can swap in a weaker instruction set.
fn engine() -> Md5Many {
    #[cfg(test)]
    if let Some(level) = tests::forced_level() {
        return Md5Many::from_level(level);
    }
    Md5Many::new()
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::Cell;

    use fearless_simd::{Level, Simd};
    use md5::{Digest, Md5};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    thread_local! {
        static FORCED: Cell<Option<Level>> = const { Cell::new(None) };
    }

    pub(in crate::agg) fn forced_level() -> Option<Level> {
        FORCED.with(Cell::get)
    }

    /// Every instruction set the batch engine can use on this CPU, the portable path first.
    pub(in crate::agg) fn levels() -> Vec<(&'static str, Level)> {
        let best = Level::new();
        let mut levels = vec![("portable", Level::fallback())];
        if let Some(sse) = best.as_sse4_2() {
            levels.push(("sse4.2", sse.level()));
        }
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if let Some(avx2) = best.as_avx2() {
            levels.push(("avx2", avx2.level()));
        }
        levels.push(("detected", best));
        levels
    }

    /// Runs `f` with the batch engine at `level` (on this thread).
    pub(in crate::agg) fn with_level<T>(level: Level, f: impl FnOnce() -> T) -> T {
        FORCED.with(|c| c.set(Some(level)));
        let out = f();
        FORCED.with(|c| c.set(None));
        out
    }

    fn reference(bytes: &[u8]) -> [u8; DIGEST_LEN] {
        Md5::digest(bytes).into()
    }

    fn bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rng.fill(&mut v[..]);
        v
    }

    fn check_batch(messages: &[Vec<u8>], what: &str) {
        let inputs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let expected: Vec<_> = inputs.iter().map(|m| reference(m)).collect();
        for (name, level) in levels() {
            let mut out = vec![[0xAA; DIGEST_LEN]; inputs.len()];
            with_level(level, || md5_batch(&inputs, &mut out));
            for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
                assert_eq!(
                    got,
                    want,
                    "{name}: {what}, message {i} of {} ({} bytes)",
                    inputs.len(),
                    inputs[i].len()
                );
            }
        }
    }

    #[test]
    fn the_portable_path_and_each_instruction_set_are_tested() {
        let levels = levels();
        assert!(levels[0].1.is_fallback(), "the portable path is exercised");
        let names: Vec<_> = levels.iter().map(|(n, _)| *n).collect();
        eprintln!("MD5 batch engine levels tested here: {names:?}");
        // Forcing works: the portable engine has one lane.
        with_level(Level::fallback(), || assert_eq!(engine().lanes(), 1));
    }

    #[test]
    fn single_stream_matches_md5_crate_for_every_length_to_2048() {
        let mut rng = StdRng::seed_from_u64(1);
        let data = bytes(&mut rng, 2048);
        for len in 0..=2048 {
            assert_eq!(md5(&data[..len]), reference(&data[..len]), "length {len}");
        }
    }

    #[test]
    fn single_stream_matches_md5_crate_for_random_sizes() {
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..60 {
            let len = rng.random_range(0..200_000);
            let data = bytes(&mut rng, len);
            assert_eq!(md5(&data), reference(&data), "length {len}");
        }
    }

    #[test]
    fn batch_of_every_length_to_2048() {
        let mut rng = StdRng::seed_from_u64(3);
        // One batch of all 2,049 lengths, in order and shuffled, and each length alone.
        let mut messages: Vec<Vec<u8>> = (0..=2048).map(|len| bytes(&mut rng, len)).collect();
        check_batch(&messages, "lengths 0..=2048 in order");
        for m in &messages {
            check_batch(std::slice::from_ref(m), "one message");
        }
        use rand::seq::SliceRandom;
        messages.shuffle(&mut rng);
        check_batch(&messages, "lengths 0..=2048 shuffled");
    }

    #[test]
    fn batches_of_equal_lengths() {
        let mut rng = StdRng::seed_from_u64(4);
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 51_200] {
            for n in [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48] {
                let messages: Vec<_> = (0..n).map(|_| bytes(&mut rng, len)).collect();
                check_batch(&messages, &format!("{n} messages of {len} bytes"));
            }
        }
    }

    #[test]
    fn batches_of_random_shapes() {
        let mut rng = StdRng::seed_from_u64(5);
        for round in 0..60 {
            let n = match round % 5 {
                0 => 1,
                1 => 17,
                _ => rng.random_range(0..70),
            };
            // Mixed lengths: tiny, around block boundaries, aggregate-sized, and skewed
            // (one long message among short ones).
            let messages: Vec<_> = (0..n)
                .map(|_| {
                    let len = match rng.random_range(0..4) {
                        0 => rng.random_range(0..130),
                        1 => rng.random_range(0..5_000),
                        2 => rng.random_range(50_000..51_201),
                        _ => rng.random_range(0..120_000),
                    };
                    bytes(&mut rng, len)
                })
                .collect();
            check_batch(&messages, &format!("round {round}: {n} mixed messages"));
        }
    }

    #[test]
    fn empty_batch() {
        let mut out: [[u8; DIGEST_LEN]; 0] = [];
        md5_batch(&[], &mut out);
    }
}
