//! Retrieval: getting records of one shard from Kinesis. Polling (GetRecords) for now;
//! enhanced fan-out joins it behind the same shape.

pub mod polling;

pub use polling::{Fetched, PollingFetcher};
