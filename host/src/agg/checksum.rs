//! The MD5 that ends every aggregate, and that routes partition keys.
//!
//! One message: the `md-5` crate. One MD5 stream cannot use SIMD (each 64-byte block
//! depends on the one before), but independent messages can, one per SIMD lane, and a
//! GetRecords batch or a PutRecords request carries many aggregates: [`super::decode_many`],
//! [`super::deaggregate_many`] and [`super::write_digests`] hash theirs together with
//! [`md5_batch`]. It runs 16 messages at once with AVX-512 or 8 with AVX2 (chosen once per
//! process at run time; kernels in `checksum/x86.rs`), `md-5` one message at a time on
//! other CPUs.
//!
//! The lanes are fed by safe code (`checksum/lanes.rs`): each step hands the kernel a
//! reference to the next 64-byte block of every lane's message, which it loads and
//! transposes into lanes in registers, so unsafe code reads nothing but those blocks. A
//! lane whose message is done takes the next one (longest first), with its padding blocks
//! built in a small buffer of its own; the last message left is finished in scalar code.
//! The tests check each kernel this CPU has, and the scalar paths, against `md-5`.
//!
//! In the tree rather than a crate: every Kinesis record the consumer reads passes through
//! here, and the multi-buffer MD5 crates are large, young and mostly unsafe code. The only
//! `unsafe` (in `checksum/x86.rs`) is calling a kernel once its instruction set is
//! detected and moving registers to and from the stack arrays.

use md5::{Digest, Md5};

use super::DIGEST_LEN;

/// The 64 steps of MD5's compression function on `$a`..`$d` and the message words `$m`:
/// calls `$step!(function, a, b, c, d, word, constant, rotation)` for each (RFC 1321, 3.4;
/// the constants are floor(|sin(i + 1)| * 2^32)). Each kernel brings its own `$step`.
macro_rules! md5_steps {
    ($step:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:ident) => {
        $step!(F, $a, $b, $c, $d, $m[0], 0xd76aa478_u32, 7);
        $step!(F, $d, $a, $b, $c, $m[1], 0xe8c7b756_u32, 12);
        $step!(F, $c, $d, $a, $b, $m[2], 0x242070db_u32, 17);
        $step!(F, $b, $c, $d, $a, $m[3], 0xc1bdceee_u32, 22);
        $step!(F, $a, $b, $c, $d, $m[4], 0xf57c0faf_u32, 7);
        $step!(F, $d, $a, $b, $c, $m[5], 0x4787c62a_u32, 12);
        $step!(F, $c, $d, $a, $b, $m[6], 0xa8304613_u32, 17);
        $step!(F, $b, $c, $d, $a, $m[7], 0xfd469501_u32, 22);
        $step!(F, $a, $b, $c, $d, $m[8], 0x698098d8_u32, 7);
        $step!(F, $d, $a, $b, $c, $m[9], 0x8b44f7af_u32, 12);
        $step!(F, $c, $d, $a, $b, $m[10], 0xffff5bb1_u32, 17);
        $step!(F, $b, $c, $d, $a, $m[11], 0x895cd7be_u32, 22);
        $step!(F, $a, $b, $c, $d, $m[12], 0x6b901122_u32, 7);
        $step!(F, $d, $a, $b, $c, $m[13], 0xfd987193_u32, 12);
        $step!(F, $c, $d, $a, $b, $m[14], 0xa679438e_u32, 17);
        $step!(F, $b, $c, $d, $a, $m[15], 0x49b40821_u32, 22);
        $step!(G, $a, $b, $c, $d, $m[1], 0xf61e2562_u32, 5);
        $step!(G, $d, $a, $b, $c, $m[6], 0xc040b340_u32, 9);
        $step!(G, $c, $d, $a, $b, $m[11], 0x265e5a51_u32, 14);
        $step!(G, $b, $c, $d, $a, $m[0], 0xe9b6c7aa_u32, 20);
        $step!(G, $a, $b, $c, $d, $m[5], 0xd62f105d_u32, 5);
        $step!(G, $d, $a, $b, $c, $m[10], 0x02441453_u32, 9);
        $step!(G, $c, $d, $a, $b, $m[15], 0xd8a1e681_u32, 14);
        $step!(G, $b, $c, $d, $a, $m[4], 0xe7d3fbc8_u32, 20);
        $step!(G, $a, $b, $c, $d, $m[9], 0x21e1cde6_u32, 5);
        $step!(G, $d, $a, $b, $c, $m[14], 0xc33707d6_u32, 9);
        $step!(G, $c, $d, $a, $b, $m[3], 0xf4d50d87_u32, 14);
        $step!(G, $b, $c, $d, $a, $m[8], 0x455a14ed_u32, 20);
        $step!(G, $a, $b, $c, $d, $m[13], 0xa9e3e905_u32, 5);
        $step!(G, $d, $a, $b, $c, $m[2], 0xfcefa3f8_u32, 9);
        $step!(G, $c, $d, $a, $b, $m[7], 0x676f02d9_u32, 14);
        $step!(G, $b, $c, $d, $a, $m[12], 0x8d2a4c8a_u32, 20);
        $step!(H, $a, $b, $c, $d, $m[5], 0xfffa3942_u32, 4);
        $step!(H, $d, $a, $b, $c, $m[8], 0x8771f681_u32, 11);
        $step!(H, $c, $d, $a, $b, $m[11], 0x6d9d6122_u32, 16);
        $step!(H, $b, $c, $d, $a, $m[14], 0xfde5380c_u32, 23);
        $step!(H, $a, $b, $c, $d, $m[1], 0xa4beea44_u32, 4);
        $step!(H, $d, $a, $b, $c, $m[4], 0x4bdecfa9_u32, 11);
        $step!(H, $c, $d, $a, $b, $m[7], 0xf6bb4b60_u32, 16);
        $step!(H, $b, $c, $d, $a, $m[10], 0xbebfbc70_u32, 23);
        $step!(H, $a, $b, $c, $d, $m[13], 0x289b7ec6_u32, 4);
        $step!(H, $d, $a, $b, $c, $m[0], 0xeaa127fa_u32, 11);
        $step!(H, $c, $d, $a, $b, $m[3], 0xd4ef3085_u32, 16);
        $step!(H, $b, $c, $d, $a, $m[6], 0x04881d05_u32, 23);
        $step!(H, $a, $b, $c, $d, $m[9], 0xd9d4d039_u32, 4);
        $step!(H, $d, $a, $b, $c, $m[12], 0xe6db99e5_u32, 11);
        $step!(H, $c, $d, $a, $b, $m[15], 0x1fa27cf8_u32, 16);
        $step!(H, $b, $c, $d, $a, $m[2], 0xc4ac5665_u32, 23);
        $step!(I, $a, $b, $c, $d, $m[0], 0xf4292244_u32, 6);
        $step!(I, $d, $a, $b, $c, $m[7], 0x432aff97_u32, 10);
        $step!(I, $c, $d, $a, $b, $m[14], 0xab9423a7_u32, 15);
        $step!(I, $b, $c, $d, $a, $m[5], 0xfc93a039_u32, 21);
        $step!(I, $a, $b, $c, $d, $m[12], 0x655b59c3_u32, 6);
        $step!(I, $d, $a, $b, $c, $m[3], 0x8f0ccc92_u32, 10);
        $step!(I, $c, $d, $a, $b, $m[10], 0xffeff47d_u32, 15);
        $step!(I, $b, $c, $d, $a, $m[1], 0x85845dd1_u32, 21);
        $step!(I, $a, $b, $c, $d, $m[8], 0x6fa87e4f_u32, 6);
        $step!(I, $d, $a, $b, $c, $m[15], 0xfe2ce6e0_u32, 10);
        $step!(I, $c, $d, $a, $b, $m[6], 0xa3014314_u32, 15);
        $step!(I, $b, $c, $d, $a, $m[13], 0x4e0811a1_u32, 21);
        $step!(I, $a, $b, $c, $d, $m[4], 0xf7537e82_u32, 6);
        $step!(I, $d, $a, $b, $c, $m[11], 0xbd3af235_u32, 10);
        $step!(I, $c, $d, $a, $b, $m[2], 0x2ad7d2bb_u32, 15);
        $step!(I, $b, $c, $d, $a, $m[9], 0xeb86d391_u32, 21);
    };
}

#[cfg(target_arch = "x86_64")]
mod x86;

mod lanes;

/// MD5 of one message.
pub(super) fn md5(bytes: &[u8]) -> [u8; DIGEST_LEN] {
    Md5::digest(bytes).into()
}

/// MD5 of each of `inputs` into the same place of `outputs` (which must be as long; extra
/// places of either are left alone).
pub(super) fn md5_batch(inputs: &[&[u8]], outputs: &mut [[u8; DIGEST_LEN]]) {
    debug_assert_eq!(inputs.len(), outputs.len(), "one output per input");
    let n = inputs.len().min(outputs.len());
    let (inputs, outputs) = (&inputs[..n], &mut outputs[..n]);
    match kernel() {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512(k) if n > 1 => lanes::hash_lanes(inputs, outputs, |s, b| k.compress(s, b)),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2(k) if n > 1 => lanes::hash_lanes(inputs, outputs, |s, b| k.compress(s, b)),
        _ => {
            for (input, output) in inputs.iter().zip(outputs) {
                *output = md5(input);
            }
        }
    }
}

/// How [`md5_batch`] hashes: the SIMD kernels carry proof that this CPU has their
/// instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// `md-5`, one message at a time.
    Scalar,
    /// 8 messages at once.
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
    /// 16 messages at once.
    #[cfg(target_arch = "x86_64")]
    Avx512(x86::Avx512),
}

/// The best kernel for this CPU, detected once per process (tests can force another).
fn kernel() -> Kernel {
    #[cfg(test)]
    if let Some(forced) = tests::forced() {
        return forced;
    }
    static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *BEST.get_or_init(detect)
}

fn detect() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(k) = x86::Avx512::detect() {
            return Kernel::Avx512(k);
        }
        if let Some(k) = x86::Avx2::detect() {
            return Kernel::Avx2(k);
        }
    }
    Kernel::Scalar
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::Cell;

    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::lanes::{compress_scalar, hash_lanes};
    use super::*;

    thread_local! {
        static FORCED: Cell<Option<Kernel>> = const { Cell::new(None) };
    }

    pub(super) fn forced() -> Option<Kernel> {
        FORCED.with(Cell::get)
    }

    /// Every kernel this CPU can run, the scalar one first.
    pub(in crate::agg) fn kernels() -> Vec<(&'static str, Kernel)> {
        #[allow(unused_mut, reason = "only x86_64 has more than one")]
        let mut kernels = vec![("scalar", Kernel::Scalar)];
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(k) = x86::Avx2::detect() {
                kernels.push(("avx2", Kernel::Avx2(k)));
            }
            if let Some(k) = x86::Avx512::detect() {
                kernels.push(("avx512", Kernel::Avx512(k)));
            }
        }
        kernels
    }

    /// Runs `f` with [`md5_batch`] using `kernel` (on this thread).
    pub(in crate::agg) fn with_kernel<T>(kernel: Kernel, f: impl FnOnce() -> T) -> T {
        FORCED.with(|c| c.set(Some(kernel)));
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

    /// `md5_batch` of `messages` on every kernel, and the lane scheduler with one lane of
    /// scalar code (what runs the end of a batch), against `md-5`.
    fn check_batch(messages: &[Vec<u8>], what: &str) {
        let inputs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let expected: Vec<_> = inputs.iter().map(|m| reference(m)).collect();
        let check = |name: &str, out: &[[u8; DIGEST_LEN]]| {
            for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
                assert_eq!(
                    got,
                    want,
                    "{name}: {what}, message {i} of {} ({} bytes)",
                    inputs.len(),
                    inputs[i].len()
                );
            }
        };
        for (name, kernel) in kernels() {
            let mut out = vec![[0xAA; DIGEST_LEN]; inputs.len()];
            with_kernel(kernel, || md5_batch(&inputs, &mut out));
            check(name, &out);
        }
        let mut out = vec![[0xAA; DIGEST_LEN]; inputs.len()];
        hash_lanes::<1>(&inputs, &mut out, |s, [block]| {
            let mut state = s.map(|[v]| v);
            compress_scalar(&mut state, block);
            *s = state.map(|v| [v]);
        });
        check("lanes of scalar code", &out);
    }

    #[test]
    fn every_kernel_of_this_cpu_is_tested() {
        let kernels = kernels();
        let names: Vec<_> = kernels.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "MD5 batch kernels tested here: {names:?}, used: {:?}",
            detect()
        );
        assert_eq!(kernels[0].1, Kernel::Scalar);
        assert_eq!(
            kernels.last().map(|k| k.1),
            Some(detect()),
            "the best is used"
        );
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            assert!(names.contains(&"avx2"));
        }
        // Forcing works.
        with_kernel(Kernel::Scalar, || assert_eq!(kernel(), Kernel::Scalar));
        assert_eq!(kernel(), detect());
    }

    #[test]
    fn single_message_matches_md5_crate_for_every_length_to_2048() {
        let mut rng = StdRng::seed_from_u64(1);
        let data = bytes(&mut rng, 2048);
        for len in 0..=2048 {
            assert_eq!(md5(&data[..len]), reference(&data[..len]), "length {len}");
        }
    }

    #[test]
    fn batch_of_every_length_to_2048() {
        let mut rng = StdRng::seed_from_u64(3);
        // One batch of all 2,049 lengths, in order and shuffled, and each length in a
        // batch of its own and in a pair.
        let mut messages: Vec<Vec<u8>> = (0..=2048).map(|len| bytes(&mut rng, len)).collect();
        check_batch(&messages, "lengths 0..=2048 in order");
        for pair in messages.windows(2) {
            check_batch(&pair[..1], "one message");
            check_batch(pair, "two messages");
        }
        messages.shuffle(&mut rng);
        check_batch(&messages, "lengths 0..=2048 shuffled");
    }

    #[test]
    fn batches_of_equal_lengths() {
        let mut rng = StdRng::seed_from_u64(4);
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 51_200] {
            for n in [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 100] {
                let messages: Vec<_> = (0..n).map(|_| bytes(&mut rng, len)).collect();
                check_batch(&messages, &format!("{n} messages of {len} bytes"));
            }
        }
    }

    #[test]
    fn batches_of_mixed_lengths() {
        let mut rng = StdRng::seed_from_u64(5);
        for n in [1, 7, 8, 9, 16, 17, 100] {
            for round in 0..6 {
                // Tiny, around block boundaries, aggregate-sized, and skewed (one long
                // message among short ones: its end runs alone).
                let messages: Vec<_> = (0..n)
                    .map(|i| {
                        let len = match (round, i) {
                            (0, 0) => 200_000,
                            (0, _) => rng.random_range(0..100),
                            _ => match rng.random_range(0..4) {
                                0 => rng.random_range(0..130),
                                1 => rng.random_range(0..5_000),
                                2 => rng.random_range(50_000..51_201),
                                _ => rng.random_range(0..120_000),
                            },
                        };
                        bytes(&mut rng, len)
                    })
                    .collect();
                check_batch(&messages, &format!("round {round}: {n} mixed messages"));
            }
        }
    }

    #[test]
    fn batches_of_random_sizes() {
        let mut rng = StdRng::seed_from_u64(6);
        for round in 0..40 {
            let n = rng.random_range(0..70);
            let max = [200, 3_000, 70_000][round % 3];
            let messages: Vec<_> = (0..n)
                .map(|_| {
                    let len = rng.random_range(0..max);
                    bytes(&mut rng, len)
                })
                .collect();
            check_batch(
                &messages,
                &format!("round {round}: {n} messages below {max} bytes"),
            );
        }
    }

    /// Throughput of each kernel on a few batch shapes (wall time, so run it on a quiet
    /// machine): `cargo test --release -p shardline --lib kernel_speeds -- --ignored
    /// --nocapture`. BENCHMARKS.md quotes it for AVX-512 against AVX2.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn kernel_speeds() {
        use std::time::Instant;
        for (n, len) in [(16, 51_200), (40, 51_200), (100, 1_024), (100, 50)] {
            let messages: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; len]).collect();
            let inputs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let mut out = vec![[0; DIGEST_LEN]; n];
            for (name, kernel) in kernels() {
                let start = Instant::now();
                let mut bytes = 0;
                while start.elapsed().as_secs_f64() < 1.0 {
                    with_kernel(kernel, || md5_batch(&inputs, &mut out));
                    bytes += n * len;
                }
                let rate = bytes as f64 / start.elapsed().as_secs_f64() / 1e6;
                eprintln!("{n} messages of {len} bytes, {name}: {rate:.0} MB/s");
            }
        }
    }

    #[test]
    fn empty_inputs() {
        let mut out: [[u8; DIGEST_LEN]; 0] = [];
        for (_, kernel) in kernels() {
            with_kernel(kernel, || md5_batch(&[], &mut out));
        }
        check_batch(&[], "no message");
        check_batch(&vec![Vec::new(); 40], "40 empty messages");
        let mut mixed = vec![Vec::new(); 20];
        mixed.push(vec![1; 1000]);
        mixed.push(Vec::new());
        check_batch(&mixed, "empty messages and one of 1000 bytes");
    }
}
