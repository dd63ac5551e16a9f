//! Test component: a second version of an identity `processor` (world `pipeline`), told
//! apart from `passthrough` by its output. Every record becomes one event with the record's
//! bytes and the property `guest.version` = [`VERSION`]; hot-reload tests swap it in for
//! `passthrough` mid-stream and see from each message which version handled it.

/// The value of the `guest.version` property.
pub const VERSION: &str = "stamp-2";

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

        use super::Stamp;
        export!(Stamp);
    }

    use bindings::exports::shardline::connector::processor;
    use bindings::shardline::connector::types::{
        BatchContext, Event, Output, Processed, SourceRecord,
    };

    #[derive(Debug)]
    struct Stamp;

    impl processor::Guest for Stamp {
        fn process(_ctx: BatchContext, records: Vec<SourceRecord>) -> Processed {
            let outputs = records
                .into_iter()
                .enumerate()
                .map(|(i, record)| Output {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    event: Event {
                        key: None,
                        payload: record.data,
                        properties: vec![("guest.version".into(), super::VERSION.into())],
                        event_time_millis: None,
                    },
                    destinations: Vec::new(),
                })
                .collect();
            Processed {
                outputs,
                rejections: Vec::new(),
            }
        }
    }
}
