//! The orders example (`guest-examples/rust-orders`) written against the raw WIT bindings,
//! without the `shardline-guest` SDK: the baseline for the SDK's overhead, and the
//! component that serves as three separate stages (it exports the `full` world: the fused
//! `processor` and `deserializer`, `transformer`, `router`).
//!
//! The rules are the example's own `orders.rs`, included by path, so both components run
//! the same logic and differ only in their glue.

#[path = "../../../../guest-examples/rust-orders/src/orders.rs"]
pub mod orders;

/// The WIT bindings. Only built for Wasm: natively, a cdylib cannot export the component
/// model's symbol names (`cabi_post_shardline:connector/...`), and `cargo test` needs none.
#[cfg(target_arch = "wasm32")]
mod component {
    // The generated glue is `unsafe` by nature (canonical ABI); our own code stays safe.
    #[allow(unsafe_code)]
    mod bindings {
        wit_bindgen::generate!({
            world: "full",
            path: "../../../wit",
        });

        use super::OrdersComponent;
        export!(OrdersComponent);
    }

    use bindings::exports::shardline::connector::{deserializer, processor, router, transformer};
    use bindings::shardline::connector::host;
    use bindings::shardline::connector::types::{
        BatchContext, Destination, Event, IndexedEvent, Output, Processed, Rejection, SourceRecord,
        Stage, Transformed,
    };

    use crate::orders::{self, Settings};

    /// The exported component (stateless: settings are read on every call).
    #[derive(Debug)]
    struct OrdersComponent;

    fn settings() -> Settings {
        Settings::from_lookup(host::setting)
    }

    fn index(i: usize) -> u32 {
        // Batches are far below u32::MAX records; the WIT index is a u32.
        u32::try_from(i).unwrap_or(u32::MAX)
    }

    fn stage(stage: orders::Stage) -> Stage {
        match stage {
            orders::Stage::Deserialize => Stage::Deserialize,
            orders::Stage::Transform => Stage::Transform,
            orders::Stage::Route => Stage::Route,
        }
    }

    /// Every topic on the default sink.
    fn destinations(topics: Vec<String>) -> Vec<Destination> {
        topics
            .into_iter()
            .map(|topic| Destination {
                sink: None,
                topic: Some(topic),
                partition_key: None,
                explicit_hash_key: None,
            })
            .collect()
    }

    /// Sets `order.region`, replacing a value an earlier stage set.
    fn set_region(properties: &mut Vec<(String, String)>, region: String) {
        match properties
            .iter_mut()
            .find(|(name, _)| name == orders::REGION_PROPERTY)
        {
            Some((_, value)) => *value = region,
            None => properties.push((orders::REGION_PROPERTY.to_owned(), region)),
        }
    }

    impl processor::Guest for OrdersComponent {
        fn process(_ctx: BatchContext, records: Vec<SourceRecord>) -> Processed {
            let settings = settings();
            let mut outputs = Vec::with_capacity(records.len());
            let mut rejections = Vec::new();
            for (i, record) in records.iter().enumerate() {
                match orders::process(&record.data, &settings) {
                    Ok(Some(p)) => outputs.push(Output {
                        index: index(i),
                        event: Event {
                            key: Some(p.key),
                            payload: p.payload,
                            properties: vec![(orders::REGION_PROPERTY.to_owned(), p.region)],
                            event_time_millis: None,
                        },
                        destinations: destinations(p.topics),
                    }),
                    Ok(None) => {} // amount 0: filtered out on purpose
                    Err((s, reason)) => rejections.push(Rejection {
                        index: index(i),
                        stage: stage(s),
                        reason,
                    }),
                }
            }
            Processed {
                outputs,
                rejections,
            }
        }
    }

    impl deserializer::Guest for OrdersComponent {
        fn deserialize(
            _ctx: BatchContext,
            records: Vec<SourceRecord>,
        ) -> Vec<Result<Event, String>> {
            records
                .iter()
                .map(|record| {
                    orders::deserialize(&record.data).map(|(key, payload)| Event {
                        key: Some(key),
                        payload,
                        properties: Vec::new(),
                        event_time_millis: None,
                    })
                })
                .collect()
        }
    }

    impl transformer::Guest for OrdersComponent {
        fn transform(_ctx: BatchContext, events: Vec<Event>) -> Transformed {
            let processed_by = settings().processed_by;
            let mut kept = Vec::with_capacity(events.len());
            let mut rejections = Vec::new();
            for (i, mut event) in events.into_iter().enumerate() {
                match orders::transform(&event.payload, &processed_by) {
                    Ok(Some((payload, region))) => {
                        // Key, other properties and event time go through unchanged.
                        event.payload = payload;
                        set_region(&mut event.properties, region);
                        kept.push(IndexedEvent {
                            index: index(i),
                            event,
                        });
                    }
                    Ok(None) => {} // amount 0: filtered out on purpose
                    Err(reason) => rejections.push(Rejection {
                        index: index(i),
                        stage: Stage::Transform,
                        reason,
                    }),
                }
            }
            Transformed {
                events: kept,
                rejections,
            }
        }
    }

    impl router::Guest for OrdersComponent {
        fn route(_ctx: BatchContext, events: Vec<Event>) -> Vec<Result<Vec<Destination>, String>> {
            let topic_prefix = settings().topic_prefix;
            events
                .iter()
                .map(|event| orders::route(&event.payload, &topic_prefix).map(destinations))
                .collect()
        }
    }
}
