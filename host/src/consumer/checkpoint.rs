//! Checkpoints: positions in a shard, and the acknowledgement tracker that decides which
//! position may be written.
//!
//! A record is done when every delivery it caused (one per destination, or its dead
//! letter) was acknowledged. Deliveries complete out of order, so the checkpoint is the end
//! of the longest contiguous prefix of done records: anything after a gap is re-read after
//! a crash (at-least-once), nothing before it is ever lost.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// A position in a shard, as the KCL stores it: a sequence number and a sub-sequence number
/// (the user record inside a KPL aggregate), or one of the special values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    TrimHorizon,
    Latest,
    AtTimestamp,
    /// Every record up to and including this one is done.
    Sequence {
        sequence: String,
        sub: u64,
    },
    /// The shard is closed and every record in it is done.
    ShardEnd,
}

impl Checkpoint {
    /// The KCL's text for the `checkpoint` attribute.
    pub fn as_kcl(&self) -> &str {
        match self {
            Checkpoint::TrimHorizon => "TRIM_HORIZON",
            Checkpoint::Latest => "LATEST",
            Checkpoint::AtTimestamp => "AT_TIMESTAMP",
            Checkpoint::Sequence { sequence, .. } => sequence,
            Checkpoint::ShardEnd => "SHARD_END",
        }
    }

    /// The `checkpointSubSequenceNumber` attribute.
    pub fn sub_sequence(&self) -> u64 {
        match self {
            Checkpoint::Sequence { sub, .. } => *sub,
            _ => 0,
        }
    }

    /// Reads the KCL attributes back.
    pub fn from_kcl(checkpoint: &str, sub: u64) -> Self {
        match checkpoint {
            "TRIM_HORIZON" => Checkpoint::TrimHorizon,
            "LATEST" => Checkpoint::Latest,
            "AT_TIMESTAMP" => Checkpoint::AtTimestamp,
            "SHARD_END" => Checkpoint::ShardEnd,
            s => Checkpoint::Sequence {
                sequence: s.to_string(),
                sub,
            },
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checkpoint::Sequence { sequence, sub } if *sub > 0 => write!(f, "{sequence}/{sub}"),
            other => f.write_str(other.as_kcl()),
        }
    }
}

/// Identifies a record registered with an [`AckTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordId(u64);

#[derive(Debug)]
struct Entry {
    /// Shared by the user records of one KPL aggregate.
    sequence: Arc<str>,
    sub: u64,
    pending: u32,
    /// The record's size (data and partition key) while it is not done; 0 once done.
    bytes: u32,
    /// Events numbered up to and including this record's (`sinks::sequence`).
    outputs: u64,
}

/// Tracks outstanding deliveries per record and the checkpointable prefix.
#[derive(Debug, Default)]
pub struct AckTracker {
    /// Id of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
    /// End of the done prefix, if anything was completed since creation, with the events
    /// numbered up to it.
    done: Option<(Arc<str>, u64, u64)>,
    /// Events numbered so far: every delivery of a record gets the next number.
    numbered: u64,
    /// Bytes of the records not done yet (done ones after a gap are not counted: their
    /// deliveries, and so their data, are gone).
    held_bytes: u64,
}

impl AckTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker whose first event gets number `numbered + 1` (the number stored with the
    /// checkpoint the pass starts from).
    pub fn numbered_from(numbered: u64) -> Self {
        Self {
            numbered,
            ..Self::default()
        }
    }

    /// Registers the next record (in shard order) with the number of deliveries it waits
    /// for and its size in bytes. Zero deliveries means done at once (filtered out,
    /// skipped). The deliveries are numbered from the returned number on, in order.
    pub fn push(
        &mut self,
        sequence: Arc<str>,
        sub: u64,
        pending: u32,
        bytes: u32,
    ) -> (RecordId, u64) {
        let id = RecordId(self.base + self.entries.len() as u64);
        let first = self.numbered + 1;
        self.numbered += u64::from(pending);
        let bytes = if pending == 0 { 0 } else { bytes };
        self.held_bytes += u64::from(bytes);
        self.entries.push_back(Entry {
            sequence,
            sub,
            pending,
            bytes,
            outputs: self.numbered,
        });
        self.advance();
        (id, first)
    }

    /// Events numbered so far.
    pub fn numbered(&self) -> u64 {
        self.numbered
    }

    /// One delivery of `id` was acknowledged. Returns the bytes this released: the
    /// record's size when it was its last delivery, else 0.
    ///
    /// # Panics
    /// Never on valid ids; an id acknowledged more often than it was registered for is a
    /// bug and is ignored with an error log rather than corrupting the prefix.
    pub fn ack(&mut self, id: RecordId) -> u64 {
        let Some(idx) = id.0.checked_sub(self.base) else {
            tracing::error!(?id, "acknowledgement for a record already completed");
            return 0;
        };
        let released = match self.entries.get_mut(idx as usize) {
            Some(e) if e.pending > 0 => {
                e.pending -= 1;
                if e.pending == 0 {
                    std::mem::take(&mut e.bytes)
                } else {
                    0
                }
            }
            _ => {
                tracing::error!(?id, "unexpected acknowledgement");
                return 0;
            }
        };
        self.held_bytes -= u64::from(released);
        if idx == 0 {
            self.advance();
        }
        u64::from(released)
    }

    /// Bytes of the records registered and not done.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    fn advance(&mut self) {
        while self.entries.front().is_some_and(|e| e.pending == 0) {
            if let Some(e) = self.entries.pop_front() {
                self.base += 1;
                self.done = Some((e.sequence, e.sub, e.outputs));
            }
        }
    }

    /// Records registered and not yet done (the backpressure measure).
    pub fn in_flight(&self) -> usize {
        self.entries.len()
    }

    /// The position every record up to which is done, if any record completed.
    pub fn checkpointable(&self) -> Option<Checkpoint> {
        self.checkpointable_numbered().map(|(cp, _)| cp)
    }

    /// [`Self::checkpointable`], with the events numbered up to it.
    pub fn checkpointable_numbered(&self) -> Option<(Checkpoint, u64)> {
        self.done.as_ref().map(|(s, sub, outputs)| {
            let cp = Checkpoint::Sequence {
                sequence: s.to_string(),
                sub: *sub,
            };
            (cp, *outputs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> Option<Checkpoint> {
        Some(Checkpoint::Sequence {
            sequence: s.into(),
            sub: 0,
        })
    }

    #[test]
    fn prefix_stops_at_first_gap() {
        let mut t = AckTracker::new();
        let a = t.push("1".into(), 0, 1, 10).0;
        let b = t.push("2".into(), 0, 2, 10).0;
        let c = t.push("3".into(), 0, 1, 10).0;
        assert_eq!(t.checkpointable(), None);
        t.ack(c);
        assert_eq!(t.checkpointable(), None, "3 is done but 1 and 2 are not");
        t.ack(a);
        assert_eq!(t.checkpointable(), seq("1"));
        t.ack(b);
        assert_eq!(
            t.checkpointable(),
            seq("1"),
            "2 waits for its second destination"
        );
        t.ack(b);
        assert_eq!(t.checkpointable(), seq("3"));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn records_with_nothing_to_deliver_are_done_at_once() {
        let mut t = AckTracker::new();
        t.push("1".into(), 0, 0, 10);
        assert_eq!(t.checkpointable(), seq("1"));
        let b = t.push("2".into(), 0, 1, 10).0;
        t.push("3".into(), 0, 0, 10);
        assert_eq!(t.checkpointable(), seq("1"));
        t.ack(b);
        assert_eq!(t.checkpointable(), seq("3"));
    }

    #[test]
    fn sub_sequence_numbers_are_kept() {
        let mut t = AckTracker::new();
        let a = t.push("9".into(), 0, 1, 10).0;
        let b = t.push("9".into(), 1, 1, 10).0;
        t.ack(a);
        t.ack(b);
        assert_eq!(
            t.checkpointable(),
            Some(Checkpoint::Sequence {
                sequence: "9".into(),
                sub: 1
            })
        );
    }

    #[test]
    fn bytes_are_held_until_the_last_delivery_of_a_record() {
        let mut t = AckTracker::new();
        let a = t.push("1".into(), 0, 2, 100).0;
        let b = t.push("2".into(), 0, 1, 30).0;
        t.push("3".into(), 0, 0, 7);
        assert_eq!(
            t.held_bytes(),
            130,
            "a record with nothing to deliver holds nothing"
        );
        assert_eq!(t.ack(b), 30, "done after a gap: its bytes are released");
        assert_eq!(t.held_bytes(), 100);
        assert_eq!(t.ack(a), 0, "one of two deliveries");
        assert_eq!(t.ack(a), 100);
        assert_eq!(t.held_bytes(), 0);
        assert_eq!(t.ack(a), 0, "an extra acknowledgement releases nothing");
    }

    #[test]
    fn extra_acks_do_not_move_the_prefix() {
        let mut t = AckTracker::new();
        let a = t.push("1".into(), 0, 1, 10).0;
        let _b = t.push("2".into(), 0, 1, 10).0;
        t.ack(a);
        t.ack(a); // duplicate: ignored
        assert_eq!(t.checkpointable(), seq("1"));
        assert_eq!(t.in_flight(), 1);
    }

    #[test]
    fn kcl_text_round_trips() {
        for c in [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::AtTimestamp,
            Checkpoint::ShardEnd,
            Checkpoint::Sequence {
                sequence: "49590338271490256608559692538361571095921575989136588898".into(),
                sub: 3,
            },
        ] {
            assert_eq!(Checkpoint::from_kcl(c.as_kcl(), c.sub_sequence()), c);
        }
    }

    /// Random interleavings: the prefix never passes a record with pending deliveries.
    #[test]
    fn prefix_is_never_ahead_of_acks() {
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let mut t = AckTracker::new();
            let n = rng.random_range(1..40u64);
            let mut pending = Vec::new();
            let mut ids = Vec::new();
            let mut sizes = Vec::new();
            for i in 0..n {
                let k = rng.random_range(0..3u32);
                let bytes = rng.random_range(1..2_000u32);
                let id = t.push(i.to_string().into(), 0, k, bytes).0;
                ids.push((id, i));
                pending.push(k);
                sizes.push(bytes);
            }
            let held = |pending: &[u32]| -> u64 {
                pending
                    .iter()
                    .zip(&sizes)
                    .filter(|(&k, _)| k > 0)
                    .map(|(_, &b)| u64::from(b))
                    .sum()
            };
            assert_eq!(t.held_bytes(), held(&pending));
            let mut acks: Vec<usize> = pending
                .iter()
                .enumerate()
                .flat_map(|(i, &k)| std::iter::repeat_n(i, k as usize))
                .collect();
            acks.shuffle(&mut rng);
            for i in acks {
                let released = t.ack(ids[i].0);
                pending[i] -= 1;
                let expect_released = if pending[i] == 0 { sizes[i] } else { 0 };
                assert_eq!(released, u64::from(expect_released));
                assert_eq!(t.held_bytes(), held(&pending), "bytes of records not done");
                let first_pending = pending.iter().position(|&k| k > 0).unwrap_or(n as usize);
                let expected = first_pending.checked_sub(1).map(|j| j.to_string());
                assert_eq!(t.checkpointable().map(|c| c.as_kcl().to_string()), expected);
            }
        }
    }

    /// Every delivery gets the next number; a checkpoint carries the numbers up to it, so
    /// a replay from it numbers the same events the same way.
    #[test]
    fn deliveries_are_numbered_in_shard_order_and_checkpointed_with_their_record() {
        let mut t = AckTracker::numbered_from(40);
        let (a, first_a) = t.push("1".into(), 0, 2, 10);
        let (b, first_b) = t.push("2".into(), 0, 0, 10);
        let (c, first_c) = t.push("3".into(), 0, 1, 10);
        assert_eq!((first_a, first_b, first_c), (41, 43, 43));
        assert_eq!(t.numbered(), 43);
        assert_eq!(t.checkpointable_numbered(), None);
        t.ack(c);
        t.ack(a);
        assert_eq!(t.checkpointable_numbered(), None, "record 1 waits for two");
        t.ack(a);
        assert_eq!(
            t.checkpointable_numbered(),
            Some((seq("3").unwrap(), 43)),
            "records 1 to 3 are done: 43 events numbered up to them"
        );
        let _ = b;
    }
}
