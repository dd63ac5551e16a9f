//! The consumer (KCL-grade): leases in DynamoDB, shard sync, retrieval, shard consumers
//! and checkpoints of what the sinks acknowledged.

pub mod checkpoint;
pub mod checkpointer;
pub mod coordinator;
pub mod deaggregation;
pub mod in_flight;
pub mod lag;
pub mod lease;
pub mod lease_handoff;
pub mod lease_renewer;
pub mod lease_table;
pub mod lease_taker;
pub mod metrics;
pub mod receive_queue;
pub mod record_processor;
pub mod retrieval;
pub mod shard_consumer;
pub mod shard_sync;

/// Dead letters are the sinks' to shape ([`crate::sinks::dead_letter`]); kept here for
/// the commands that name them through the consumer.
pub use receive_queue::WorkerQueue;
pub use shard_consumer::Shared;
