//! Test component: world `pipeline` only (exports `processor`, none of the stage interfaces).
//!
//! `process` is the identity: each record becomes one output whose payload is the record's
//! bytes, unchanged. Settings (read on every call) make it misbehave on purpose when a
//! record's data contains a given byte string:
//!
//! | setting     | effect on a matching record                                         |
//! |-------------|---------------------------------------------------------------------|
//! | `panic_on`  | `panic!` (the call traps)                                           |
//! | `reject_on` | a `transform` rejection instead of an output                        |
//! | `loop_on`   | loops forever (CPU deadline tests)                                  |
//! | `alloc_on`  | allocates until memory runs out, then panics (memory cap tests)     |
//! | `probe_on`  | tries to read the environment, the file system and the network and  |
//! |             | reports what it got as properties `probe.env`, `probe.fs`, `probe.net`; |
//! |             | also `probe.clock` (wall clock, seconds since the epoch),           |
//! |             | `probe.random` (a hash keyed by the random source) and, with the    |
//! |             | setting `probe_dir`, `probe.dir` (reading that directory)           |
//! | `fanout`    | (any record) comma-separated topics on the default sink as destinations |
//!
//! Routing settings (every record):
//!
//! | setting      | effect                                                              |
//! |--------------|---------------------------------------------------------------------|
//! | `sink`       | destinations name this sink (with the `fanout` topics, or its default) |
//! | `key_prefix` | each destination's partition key is this prefix + the record's key  |
//! | `ehk_prefix` | data starting with this prefix and then a decimal number up to `;`  |
//! |              | gets that number as the destination's explicit hash key             |

/// The WIT bindings. Only built for Wasm: natively, a cdylib cannot export the component
/// model's symbol names.
#[cfg(target_arch = "wasm32")]
mod component {
    // The generated glue is `unsafe` by nature (canonical ABI); our own code stays safe.
    #[allow(unsafe_code)]
    mod bindings {
        wit_bindgen::generate!({
            world: "pipeline",
            path: "../../../wit",
        });

        use super::Passthrough;
        export!(Passthrough);
    }

    use bindings::exports::shardline::connector::processor;
    use bindings::shardline::connector::host;
    use bindings::shardline::connector::types::{
        BatchContext, Destination, Event, Output, Processed, Rejection, SourceRecord, Stage,
    };

    #[derive(Debug)]
    struct Passthrough;

    impl processor::Guest for Passthrough {
        fn process(_ctx: BatchContext, records: Vec<SourceRecord>) -> Processed {
            let panic_on = host::setting("panic_on");
            let reject_on = host::setting("reject_on");
            let loop_on = host::setting("loop_on");
            let alloc_on = host::setting("alloc_on");
            let probe_on = host::setting("probe_on");
            let probe_dir = host::setting("probe_dir");
            let sink = host::setting("sink");
            let key_prefix = host::setting("key_prefix");
            let ehk_prefix = host::setting("ehk_prefix");
            let mut topics: Vec<Option<String>> = host::setting("fanout")
                .map(|t| super::topics(&t).map(|t| Some(t.to_owned())).collect())
                .unwrap_or_default();
            if topics.is_empty() && (sink.is_some() || key_prefix.is_some() || ehk_prefix.is_some())
            {
                topics.push(None);
            }
            let mut outputs = Vec::with_capacity(records.len());
            let mut rejections = Vec::new();
            for (i, record) in records.into_iter().enumerate() {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                if let Some(value) = super::hit(&panic_on, &record.data) {
                    panic!("poison record at index {i}: payload contains {value:?}");
                }
                if let Some(value) = super::hit(&reject_on, &record.data) {
                    rejections.push(Rejection {
                        index,
                        stage: Stage::Transform,
                        reason: format!("rejected: payload contains {value}"),
                    });
                    continue;
                }
                if super::hit(&loop_on, &record.data).is_some() {
                    super::spin_forever();
                }
                if super::hit(&alloc_on, &record.data).is_some() {
                    super::exhaust_memory();
                }
                let properties = if super::hit(&probe_on, &record.data).is_some() {
                    super::probe_capabilities(probe_dir.as_deref())
                } else {
                    Vec::new()
                };
                let partition_key = key_prefix
                    .as_ref()
                    .map(|p| format!("{p}{}", record.partition_key));
                let explicit_hash_key = ehk_prefix
                    .as_deref()
                    .and_then(|p| super::explicit_hash_key(p, &record.data));
                let destinations = topics
                    .iter()
                    .map(|topic| Destination {
                        sink: sink.clone(),
                        topic: topic.clone(),
                        partition_key: partition_key.clone(),
                        explicit_hash_key: explicit_hash_key.clone(),
                    })
                    .collect();
                outputs.push(Output {
                    index,
                    event: Event {
                        key: None,
                        payload: record.data, // moved, byte-exact
                        properties,
                        event_time_millis: None,
                    },
                    destinations,
                });
            }
            Processed {
                outputs,
                rejections,
            }
        }
    }
}

/// The setting's value when it is set and occurs in `data`.
pub fn hit<'a>(setting: &'a Option<String>, data: &[u8]) -> Option<&'a str> {
    setting
        .as_deref()
        .filter(|value| contains(data, value.as_bytes()))
}

/// Whether `needle` occurs in `haystack` (an empty needle occurs everywhere).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// With data `<prefix><digits>;…`, the digits.
pub fn explicit_hash_key(prefix: &str, data: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(prefix.as_bytes())?;
    let end = rest.iter().position(|&b| b == b';')?;
    let digits = std::str::from_utf8(rest.get(..end)?).ok()?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.to_owned())
}

/// The topics of a `fanout` setting: comma-separated, trimmed, empty items skipped.
pub fn topics(setting: &str) -> impl Iterator<Item = &str> {
    setting.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Tries what a sandboxed guest must not be able to do and says what happened.
pub fn probe_capabilities(dir: Option<&str>) -> Vec<(String, String)> {
    use std::hash::BuildHasher;
    let env = std::env::vars().count().to_string();
    let read = |d: &str| match std::fs::read_dir(d) {
        Ok(entries) => format!("ok: {} entries", entries.count()),
        Err(e) => format!("err: {e}"),
    };
    let net = match std::net::TcpStream::connect("127.0.0.1:6650") {
        Ok(_) => "ok: connected".to_string(),
        Err(e) => format!("err: {e}"),
    };
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    // std seeds its hash keys from the random source once per instance.
    let random = std::collections::hash_map::RandomState::new().hash_one(42u8);
    let mut found = vec![
        ("probe.env".to_string(), env),
        ("probe.fs".to_string(), read("/")),
        ("probe.net".to_string(), net),
        ("probe.clock".to_string(), clock.to_string()),
        ("probe.random".to_string(), random.to_string()),
    ];
    if let Some(d) = dir {
        found.push(("probe.dir".to_string(), read(d)));
    }
    found
}

/// Burns CPU until the host interrupts the call.
pub fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates (and touches) 1 MiB blocks until an allocation fails, then panics.
pub fn exhaust_memory() -> ! {
    const BLOCK: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = Vec::new();
        if block.try_reserve_exact(BLOCK).is_err() || hoard.try_reserve(1).is_err() {
            panic!("out of memory after allocating {} MiB", hoard.len());
        }
        block.resize(BLOCK, 1);
        hoard.push(std::hint::black_box(block));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_bytes() {
        assert!(contains(b"abcPOISONdef", b"POISON"));
        assert!(contains(b"POISON", b"POISON"));
        assert!(!contains(b"POISO", b"POISON"));
        assert!(contains(b"", b""));
        assert!(!contains(b"", b"x"));
    }

    #[test]
    fn fanout_topics() {
        assert_eq!(topics(" a, b ,,c,").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(topics("").count(), 0);
    }
}
