//! Fuzz target for config reading: arbitrary text through every format Shardline accepts —
//! its own YAML (`Config::from_yaml`, what `run` and `validate` read) and the four foreign
//! formats `shardline convert` / `--from` take (`migrate::convert`: Pulsar IO YAML/JSON,
//! StateFun YAML, Samza properties, Flink properties). Errors are expected; a panic, a stack
//! overflow (deeply nested YAML) or an unbounded allocation (alias bombs) is a finding.
//!
//! Every input goes through all five readers, so the seed corpus can be the real files
//! (config/, tests/golden/config/, tests/golden/convert/) as they are. What must hold
//! besides not crashing: a converted config renders to YAML that reads back as a valid
//! native config (the converter's promise: `convert` prints exactly what `run --from` runs).

#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use shardline::config::Config;
use shardline::migrate::{self, ConvertedSink, Format, Options};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = PathBuf::from("/nonexistent");
    let _ = Config::from_yaml(text, "fuzz.yaml", base.clone());

    // The destination is what a user passes on the command line; alternate both kinds so
    // both sink shapes get rendered and read back.
    let to = if data.len() % 2 == 0 {
        ConvertedSink::Pulsar("persistent://public/default/out".into())
    } else {
        ConvertedSink::Kinesis("out".into())
    };
    let opts = Options {
        to: Some(to),
        pulsar_url: None,
        stream: Some("in".into()),
        overlay: None,
    };
    for format in Format::ALL {
        if let Ok(converted) = migrate::convert(text, "fuzz", base.clone(), format, &opts) {
            for secrets in [false, true] {
                let yaml = converted.yaml(secrets);
                if secrets {
                    if let Err(e) = Config::from_yaml(&yaml, "rendered", base.clone()) {
                        panic!("{format}: the converted config does not read back: {e}\n{yaml}");
                    }
                }
            }
        }
    }
});
