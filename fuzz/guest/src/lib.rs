//! The `wit_values` fuzz target's component: every export returns what a script tells it
//! to, so the host sees arbitrary values come back across the WIT boundary — indices in and
//! out of range and in any order, too many or too few results, empty and over-long keys,
//! explicit hash keys valid and not, rejections, traps and a blown memory limit.
//!
//! The script travels in the batch context, which every call receives: `shard-id` is
//! `fuzz/P/D/T/R`, four hex strings, one per export (`process`, `deserialize`,
//! `transform`, `route`). A script that runs out reads as zeros, so every byte string is a
//! valid script. The same script answers every call of its export, whatever the batch size
//! (the host retries a failed batch record by record).

#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "full",
        path: "../../wit",
    });

    use super::FuzzGuest;
    export!(FuzzGuest);
}

use bindings::exports::shardline::connector::{deserializer, processor, router, transformer};
use bindings::shardline::connector::types::{
    BatchContext, Destination, Event, IndexedEvent, Output, Processed, Rejection, SourceRecord,
    Stage, Transformed,
};

struct FuzzGuest;

/// Reads a script; past its end every byte is 0.
struct Script {
    bytes: Vec<u8>,
    at: usize,
}

/// A hash key just above the largest valid one (2^128).
const OVER_MAX_HASH_KEY: &str = "340282366920938463463374607431768211456";
/// The largest valid explicit hash key (2^128 - 1).
const MAX_HASH_KEY: &str = "340282366920938463463374607431768211455";

impl Script {
    /// Section `which` (0 process, 1 deserialize, 2 transform, 3 route) of the context.
    fn of(ctx: &BatchContext, which: usize) -> Self {
        let hex = ctx.shard_id.split('/').nth(which + 1).unwrap_or("");
        let bytes = hex
            .as_bytes()
            .chunks(2)
            .filter_map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
            .collect();
        Script { bytes, at: 0 }
    }

    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn i64(&mut self) -> i64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        i64::from_le_bytes(b)
    }

    /// 0..=max.
    fn count(&mut self, max: u8) -> usize {
        usize::from(self.byte() % (max + 1))
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// Mostly a valid position among `n` inputs (in any order), sometimes one past the end
    /// or anything at all.
    fn index(&mut self, n: usize) -> u32 {
        match self.byte() % 8 {
            0..=5 => (usize::from(self.byte()) % n.max(1)) as u32,
            6 => n as u32 + u32::from(self.byte() % 2),
            _ => self.u32(),
        }
    }

    /// Short text from the script, sometimes a long run (around the 256-character
    /// partition key limit), sometimes multi-byte characters, sometimes empty.
    fn text(&mut self) -> String {
        match self.byte() % 8 {
            0 => String::new(),
            1 => "k".repeat(250 + usize::from(self.byte() % 12)),
            2 => "é".repeat(usize::from(self.byte())),
            _ => {
                let n = self.count(24);
                let raw: Vec<u8> = (0..n).map(|_| self.byte()).collect();
                String::from_utf8_lossy(&raw).into_owned()
            }
        }
    }

    fn option<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        self.flag().then(|| f(self))
    }

    fn hash_key(&mut self) -> String {
        match self.byte() % 8 {
            0 => MAX_HASH_KEY.into(),
            1 => OVER_MAX_HASH_KEY.into(),
            2 => format!("000{MAX_HASH_KEY}"),
            3 => "0".into(),
            4 => self.text(),
            _ => {
                let n = self.count(45);
                (0..n)
                    .map(|_| char::from(b'0' + self.byte() % 10))
                    .collect()
            }
        }
    }

    fn sink(&mut self) -> String {
        match self.byte() % 4 {
            0 => "pulsar".into(),
            1 => "kinesis".into(),
            2 => "missing".into(),
            _ => self.text(),
        }
    }

    fn event(&mut self) -> Event {
        let key = self.option(Self::text);
        let n = self.count(16);
        let payload = (0..n).map(|_| self.byte()).collect();
        let properties = (0..self.count(2))
            .map(|_| (self.text(), self.text()))
            .collect();
        let event_time_millis = self.option(Self::i64);
        Event {
            key,
            payload,
            properties,
            event_time_millis,
        }
    }

    fn destination(&mut self) -> Destination {
        Destination {
            sink: self.option(Self::sink),
            topic: self.option(Self::text),
            partition_key: self.option(Self::text),
            explicit_hash_key: self.option(Self::hash_key),
        }
    }

    fn destinations(&mut self) -> Vec<Destination> {
        (0..self.count(3)).map(|_| self.destination()).collect()
    }

    fn stage(&mut self) -> Stage {
        match self.byte() % 3 {
            0 => Stage::Deserialize,
            1 => Stage::Transform,
            _ => Stage::Route,
        }
    }

    fn rejections(&mut self, n: usize) -> Vec<Rejection> {
        (0..self.count(4))
            .map(|_| Rejection {
                index: self.index(n),
                stage: self.stage(),
                reason: self.text(),
            })
            .collect()
    }

    /// A result count: `n` mostly, sometimes one more or one less.
    fn results(&mut self, n: usize) -> usize {
        match self.byte() % 16 {
            0 => n + 1,
            1 => n.saturating_sub(1),
            _ => n,
        }
    }

    /// The first byte of a section: now and then trap, or grow memory past the limit.
    fn misbehave(&mut self) {
        match self.byte() {
            0xff => panic!("the script says trap"),
            0xfe => {
                // Past any `wasm.memory_limit`: the host must report it, not die.
                let v = vec![1u8; 1 << 30];
                std::hint::black_box(v);
            }
            _ => {}
        }
    }
}

impl processor::Guest for FuzzGuest {
    fn process(ctx: BatchContext, records: Vec<SourceRecord>) -> Processed {
        let mut s = Script::of(&ctx, 0);
        s.misbehave();
        let n = records.len();
        let outputs = (0..s.count(16))
            .map(|_| Output {
                index: s.index(n),
                event: s.event(),
                destinations: s.destinations(),
            })
            .collect();
        Processed {
            outputs,
            rejections: s.rejections(n),
        }
    }
}

impl deserializer::Guest for FuzzGuest {
    fn deserialize(ctx: BatchContext, records: Vec<SourceRecord>) -> Vec<Result<Event, String>> {
        let mut s = Script::of(&ctx, 1);
        s.misbehave();
        let n = s.results(records.len());
        (0..n)
            .map(|_| {
                if s.byte() % 4 == 0 {
                    Err(s.text())
                } else {
                    Ok(s.event())
                }
            })
            .collect()
    }
}

impl transformer::Guest for FuzzGuest {
    fn transform(ctx: BatchContext, events: Vec<Event>) -> Transformed {
        let mut s = Script::of(&ctx, 2);
        s.misbehave();
        let n = events.len();
        let events = (0..s.count(16))
            .map(|_| IndexedEvent {
                index: s.index(n),
                event: s.event(),
            })
            .collect();
        Transformed {
            events,
            rejections: s.rejections(n),
        }
    }
}

impl router::Guest for FuzzGuest {
    fn route(ctx: BatchContext, events: Vec<Event>) -> Vec<Result<Vec<Destination>, String>> {
        let mut s = Script::of(&ctx, 3);
        s.misbehave();
        let n = s.results(events.len());
        (0..n)
            .map(|_| {
                if s.byte() % 8 == 0 {
                    Err(s.text())
                } else {
                    Ok(s.destinations())
                }
            })
            .collect()
    }
}
