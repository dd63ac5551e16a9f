//! Feeding messages to a kernel `L` lanes at a time, in safe code: each step hands the
//! kernel the next block of every lane's message (or of its padding, built here); a lane
//! whose message is done takes the next one; the last message left is finished in scalar
//! code. While every lane has whole blocks of its message left, they go to the kernel in a
//! run, without looking at the lanes in between: most of a long message is hashed so.

#![cfg_attr(
    not(target_arch = "x86_64"),
    allow(
        dead_code,
        reason = "only the x86_64 kernels run lanes (the tests run them everywhere)"
    )
)]

use crate::agg::DIGEST_LEN;

/// MD5 works on 64-byte blocks.
pub(super) const BLOCK: usize = 64;
/// The initial state (RFC 1321, 3.3).
const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Hashes `inputs` `L` at a time: `compress` runs one MD5 block of each lane, on a state
/// stored word by word (`state[i][lane]`) and the lanes' blocks. A lane whose
/// message is done takes the next one; lanes without a message hash whatever is in their
/// block, and their state is not read. The last message left alone is finished one block
/// at a time in scalar code, cheaper than a SIMD step for one lane.
pub(super) fn hash_lanes<const L: usize>(
    inputs: &[&[u8]],
    outputs: &mut [[u8; DIGEST_LEN]],
    compress: impl Fn(&mut [[u32; L]; 4], &[&[u8; BLOCK]; L]),
) {
    /// The block of a lane without a message (its state is not read).
    const IDLE: [u8; BLOCK] = [0; BLOCK];
    // Longest first, so the lanes run out of work at about the same time.
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
    let mut waiting = order.into_iter().map(|i| Lane::new(i, inputs[i]));
    let mut lanes: [Option<Lane<'_>>; L] = std::array::from_fn(|_| waiting.next());
    let mut state = IV.map(|v| [v; L]);
    let mut active = lanes.iter().flatten().count();
    loop {
        if waiting.len() == 0 && active <= 1 {
            break;
        }
        let run = lanes
            .iter()
            .map(|lane| lane.as_ref().map_or(0, |lane| lane.whole.len() / BLOCK))
            .min()
            .unwrap_or(0);
        if run > 0 {
            for i in 0..run {
                let blocks: [&[u8; BLOCK]; L] = std::array::from_fn(|l| {
                    let whole = lanes[l].as_ref().map_or(&[][..], |lane| lane.whole);
                    whole.as_chunks::<BLOCK>().0.get(i).unwrap_or(&IDLE)
                });
                compress(&mut state, &blocks);
            }
            for lane in lanes.iter_mut().flatten() {
                lane.whole = lane.whole.get(run * BLOCK..).unwrap_or_default();
            }
            continue;
        }
        let mut blocks = [&IDLE; L];
        for (lane, block) in lanes.iter_mut().zip(&mut blocks) {
            if let Some(next) = lane.as_mut().and_then(Lane::next_block) {
                *block = next;
            }
        }
        compress(&mut state, &blocks);
        for (l, slot) in lanes.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(Lane::done) {
                if let Some(lane) = slot.take() {
                    outputs[lane.out] = digest(state.map(|s| s[l]));
                }
                for (s, iv) in state.iter_mut().zip(IV) {
                    s[l] = iv;
                }
                *slot = waiting.next();
                active -= usize::from(slot.is_none());
            }
        }
    }
    for (l, slot) in lanes.iter_mut().enumerate() {
        if let Some(mut lane) = slot.take() {
            let mut s = state.map(|s| s[l]);
            while let Some(block) = lane.next_block() {
                compress_scalar(&mut s, block);
            }
            outputs[lane.out] = digest(s);
        }
    }
}

/// A message being hashed in a lane, and the blocks it has left.
struct Lane<'a> {
    /// Where its digest goes.
    out: usize,
    /// Its whole blocks not hashed yet.
    whole: &'a [u8],
    /// Its last bytes (less than a block) and the padding: one block or two.
    tail: [u8; 2 * BLOCK],
    /// Where the next tail block starts; done at `tail_end`.
    tail_at: usize,
    tail_end: usize,
}

impl<'a> Lane<'a> {
    fn new(out: usize, message: &'a [u8]) -> Self {
        let (whole, rest) = message.split_at(message.len() - message.len() % BLOCK);
        let mut tail = [0; 2 * BLOCK];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        // The message length in bits (mod 2^64) ends the last block: a second block when
        // fewer than 8 bytes are left after the 0x80.
        let tail_end = if rest.len() < BLOCK - 8 {
            BLOCK
        } else {
            2 * BLOCK
        };
        let bits = (message.len() as u64).wrapping_mul(8);
        tail[tail_end - 8..tail_end].copy_from_slice(&bits.to_le_bytes());
        Self {
            out,
            whole,
            tail,
            tail_at: 0,
            tail_end,
        }
    }

    fn next_block(&mut self) -> Option<&[u8; BLOCK]> {
        if let Some((block, rest)) = self.whole.split_first_chunk::<BLOCK>() {
            self.whole = rest;
            return Some(block);
        }
        let at = self.tail_at;
        if at >= self.tail_end {
            return None;
        }
        self.tail_at += BLOCK;
        self.tail.get(at..)?.first_chunk()
    }

    fn done(&self) -> bool {
        self.whole.is_empty() && self.tail_at >= self.tail_end
    }
}

/// The digest of a final state.
fn digest(state: [u32; 4]) -> [u8; DIGEST_LEN] {
    let mut out = [0; DIGEST_LEN];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// One MD5 block in scalar code: the end of the last message of a batch.
pub(super) fn compress_scalar(state: &mut [u32; 4], block: &[u8; BLOCK]) {
    let mut m = [0u32; 16];
    for (w, bytes) in m.iter_mut().zip(block.as_chunks::<4>().0) {
        *w = u32::from_le_bytes(*bytes);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    macro_rules! f {
        (F, $b:expr, $c:expr, $d:expr) => {
            $d ^ ($b & ($c ^ $d))
        };
        (G, $b:expr, $c:expr, $d:expr) => {
            $c ^ ($d & ($b ^ $c))
        };
        (H, $b:expr, $c:expr, $d:expr) => {
            $b ^ $c ^ $d
        };
        (I, $b:expr, $c:expr, $d:expr) => {
            $c ^ ($b | !$d)
        };
    }
    macro_rules! step {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:literal) => {
            $a = $b.wrapping_add(
                $a.wrapping_add(f!($f, $b, $c, $d))
                    .wrapping_add($m)
                    .wrapping_add($k)
                    .rotate_left($s),
            );
        };
    }
    md5_steps!(step, a, b, c, d, m);
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}
