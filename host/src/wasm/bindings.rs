//! The one `bindgen!` of the WIT package in `wit/`: host-side types and call stubs.
//!
//! Generated for the `full` world, which exports every interface; a component that exports
//! only some of them is loaded interface by interface (see [`super::component`]).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "full",
});

pub use self::exports::shardline::connector::{deserializer, processor, router, transformer};
pub use self::shardline::connector::host;
pub use self::shardline::connector::types::{
    BatchContext, Destination, Event, IndexedEvent, Output, Processed, Rejection, SourceRecord,
    Stage, Transformed,
};
