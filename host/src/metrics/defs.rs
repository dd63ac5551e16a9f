//! The definitions: every metric Shardline records, once, with its CloudWatch name (the
//! KCL's for the consumer, the KPL's for the producer), its Prometheus name and its level.
//!
//! | area | CloudWatch dimensions | metrics |
//! |---|---|---|
//! | consumer | `Operation=ProcessTask`, `StreamName`, `ShardId` (detailed) | `RecordsProcessed`, `DataBytesProcessed`, `MillisBehindLatest`, `GetRecords.Success`, `GetRecords.Time`, `ExpiredIterator`, `GetRecords.Throttled`, `Checkpoint.Time`, `Checkpoint.Failures`, `CorruptAggregates` |
//! | leases | `Operation=RenewAllLeases`/`TakeLeases`, `WorkerIdentifier` | `CurrentLeases`, `ReceiveQueue.Bytes`, `TakenLeases`, `StolenLeases`, `LostLeases`, `RenewLease.Failures` |
//! | producer | `StreamName` (+ `ErrorCode`) | `UserRecordsReceived`, `UserRecordsPut`, `KinesisRecordsPut`, `KinesisRecordsDataPut`, `UserRecordExpired`, `RetriesPerRecord`, `BufferingTime`, `RequestTime`, `AllErrors`, `ErrorsByCode` |
//! | Wasm | `Component` (+ `ErrorKind`) | `Wasm.Calls`, `Wasm.RecordsIn`, `Wasm.RecordsOut`, `Wasm.Errors`, `Wasm.Traps`, `Wasm.BatchTime`, `Wasm.InstanceRecycles`, `DeadLetters` (`StreamName`) |
//! | sinks | `Sink` | `Sink.Sends`, `Sink.Failures`, `Sink.InFlight`, `Sink.AckLatency` |
//! | exporter | — | `Metrics.PublishFailures`, `Metrics.Published` |

use super::{Def, Dim, Kind, Level, Unit};

pub const STREAM: Dim = Dim {
    cloudwatch: "StreamName",
    label: "stream",
};
pub const SHARD: Dim = Dim {
    cloudwatch: "ShardId",
    label: "shard",
};
pub const WORKER: Dim = Dim {
    cloudwatch: "WorkerIdentifier",
    label: "worker",
};
pub const OPERATION: Dim = Dim {
    cloudwatch: "Operation",
    label: "operation",
};
pub const SINK: Dim = Dim {
    cloudwatch: "Sink",
    label: "sink",
};
pub const COMPONENT: Dim = Dim {
    cloudwatch: "Component",
    label: "component",
};
pub const ERROR_CODE: Dim = Dim {
    cloudwatch: "ErrorCode",
    label: "error_code",
};
pub const ERROR_KIND: Dim = Dim {
    cloudwatch: "ErrorKind",
    label: "kind",
};

/// Latencies, in milliseconds.
pub const LATENCY_MS: &[u64] = &[
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
];
/// How far behind the tip of a shard, in milliseconds (up to a day).
pub const LAG_MS: &[u64] = &[
    0, 100, 1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000, 21_600_000,
    86_400_000,
];
/// Small counts (retries).
pub const SMALL_COUNTS: &[u64] = &[0, 1, 2, 3, 5, 10, 20, 50];

const fn counter(
    name: &'static str,
    prometheus: &'static str,
    help: &'static str,
    unit: Unit,
    level: Level,
) -> Def {
    Def {
        name,
        prometheus,
        help,
        unit,
        kind: Kind::Counter,
        level,
        buckets: &[],
    }
}

const fn gauge(
    name: &'static str,
    prometheus: &'static str,
    help: &'static str,
    level: Level,
) -> Def {
    Def {
        name,
        prometheus,
        help,
        unit: Unit::Count,
        kind: Kind::Gauge,
        level,
        buckets: &[],
    }
}

const fn distribution(
    name: &'static str,
    prometheus: &'static str,
    help: &'static str,
    unit: Unit,
    level: Level,
    buckets: &'static [u64],
) -> Def {
    Def {
        name,
        prometheus,
        help,
        unit,
        kind: Kind::Distribution,
        level,
        buckets,
    }
}

use Level::{Detailed, Summary};
use Unit::{Bytes, Count, Milliseconds};

// The definitions are statics, not constants: a series keeps `&'static Def`, and a reader
// (the progress line) finds a metric's series by that address, which only a static has
// once (each use of a constant may be a copy of its own).

// Consumer (KCL names, Operation=ProcessTask).
pub static RECORDS_PROCESSED: Def = counter(
    "RecordsProcessed",
    "shardline_records_processed_total",
    "User records (after KPL de-aggregation) handed to the stages.",
    Count,
    Summary,
);
pub static DATA_BYTES_PROCESSED: Def = counter(
    "DataBytesProcessed",
    "shardline_data_bytes_processed_total",
    "Data bytes of the user records handed to the stages.",
    Bytes,
    Summary,
);
pub static MILLIS_BEHIND_LATEST: Def = distribution(
    "MillisBehindLatest",
    "shardline_millis_behind_latest",
    "How far behind the tip of its shard each fetched batch was (GetRecords MillisBehindLatest).",
    Milliseconds,
    Summary,
    LAG_MS,
);
pub static GET_RECORDS_SUCCESS: Def = counter(
    "GetRecords.Success",
    "shardline_get_records_success_total",
    "Successful GetRecords calls.",
    Count,
    Detailed,
);
pub static GET_RECORDS_TIME: Def = distribution(
    "GetRecords.Time",
    "shardline_get_records_time_milliseconds",
    "Duration of successful GetRecords calls.",
    Milliseconds,
    Detailed,
    LATENCY_MS,
);
pub static EXPIRED_ITERATOR: Def = counter(
    "ExpiredIterator",
    "shardline_expired_iterator_total",
    "GetRecords calls answered ExpiredIteratorException (a new iterator was fetched).",
    Count,
    Summary,
);
pub static GET_RECORDS_THROTTLED: Def = counter(
    "GetRecords.Throttled",
    "shardline_get_records_throttled_total",
    "GetRecords / GetShardIterator calls refused by throttling (backed off).",
    Count,
    Summary,
);
pub static CHECKPOINT_TIME: Def = distribution(
    "Checkpoint.Time",
    "shardline_checkpoint_time_milliseconds",
    "Duration of checkpoint writes to the lease table.",
    Milliseconds,
    Summary,
    LATENCY_MS,
);
pub static CHECKPOINT_FAILURES: Def = counter(
    "Checkpoint.Failures",
    "shardline_checkpoint_failures_total",
    "Checkpoint writes that failed (retried later) or found the lease lost.",
    Count,
    Summary,
);
pub static CORRUPT_AGGREGATES: Def = counter(
    "CorruptAggregates",
    "shardline_corrupt_aggregates_total",
    "Records with the KPL aggregate magic that could not be read (delivered whole, as the KCL does).",
    Count,
    Summary,
);

// Leases (KCL names; Operation=RenewAllLeases / TakeLeases, WorkerIdentifier).
pub static CURRENT_LEASES: Def = gauge(
    "CurrentLeases",
    "shardline_leases_owned",
    "Leases this worker holds.",
    Summary,
);
pub static RECEIVE_QUEUE_BYTES: Def = Def {
    unit: Bytes,
    ..gauge(
        "ReceiveQueue.Bytes",
        "shardline_receive_queue_bytes",
        "Bytes of records fetched and not yet acknowledged by every sink (data, partition key and 1 KiB each), all shards of the worker (source.max_in_flight_bytes bounds it).",
        Summary,
    )
};
pub static TAKEN_LEASES: Def = counter(
    "TakenLeases",
    "shardline_leases_taken_total",
    "Leases this worker took (free, expired or stolen).",
    Count,
    Summary,
);
pub static STOLEN_LEASES: Def = counter(
    "StolenLeases",
    "shardline_leases_stolen_total",
    "Leases this worker took from another, busier, worker.",
    Count,
    Summary,
);
pub static LOST_LEASES: Def = counter(
    "LostLeases",
    "shardline_leases_lost_total",
    "Leases this worker lost (taken by another worker, or not renewed in time).",
    Count,
    Summary,
);
pub static RENEW_FAILURES: Def = counter(
    "RenewLease.Failures",
    "shardline_lease_renewal_failures_total",
    "Lease renewals that failed or got no answer in time.",
    Count,
    Summary,
);

// Producer (KPL names, StreamName).
pub static USER_RECORDS_RECEIVED: Def = counter(
    "UserRecordsReceived",
    "shardline_producer_user_records_received_total",
    "User records handed to the producer.",
    Count,
    Summary,
);
pub static USER_RECORDS_PUT: Def = counter(
    "UserRecordsPut",
    "shardline_producer_user_records_put_total",
    "User records stored in Kinesis.",
    Count,
    Summary,
);
pub static KINESIS_RECORDS_PUT: Def = counter(
    "KinesisRecordsPut",
    "shardline_producer_kinesis_records_put_total",
    "Kinesis records (aggregates count once) stored.",
    Count,
    Summary,
);
pub static KINESIS_RECORDS_DATA_PUT: Def = counter(
    "KinesisRecordsDataPut",
    "shardline_producer_kinesis_records_data_put_bytes_total",
    "Bytes of the Kinesis records stored.",
    Bytes,
    Summary,
);
pub static USER_RECORD_EXPIRED: Def = counter(
    "UserRecordExpired",
    "shardline_producer_user_records_expired_total",
    "User records given up on because their record_ttl ran out.",
    Count,
    Summary,
);
pub static USER_RECORDS_FAILED: Def = counter(
    "UserRecordsFailed",
    "shardline_producer_user_records_failed_total",
    "User records given up on (expired or an error waiting cannot heal).",
    Count,
    Summary,
);
pub static RETRIES_PER_RECORD: Def = distribution(
    "RetriesPerRecord",
    "shardline_producer_retries_per_record",
    "Attempts after the first of each Kinesis record, when it was stored or given up on.",
    Count,
    Summary,
    SMALL_COUNTS,
);
pub static BUFFERING_TIME: Def = distribution(
    "BufferingTime",
    "shardline_producer_buffering_time_milliseconds",
    "Time from a record's arrival in the producer to its first PutRecords.",
    Milliseconds,
    Summary,
    LATENCY_MS,
);
pub static REQUEST_TIME: Def = distribution(
    "RequestTime",
    "shardline_producer_request_time_milliseconds",
    "Duration of PutRecords requests.",
    Milliseconds,
    Detailed,
    LATENCY_MS,
);
pub static ALL_ERRORS: Def = counter(
    "AllErrors",
    "shardline_producer_errors_total",
    "Kinesis records whose attempt failed (each attempt counts).",
    Count,
    Summary,
);
pub static ERRORS_BY_CODE: Def = counter(
    "ErrorsByCode",
    "shardline_producer_errors_by_code_total",
    "Failed attempts by error code (transport problems: NetworkError).",
    Count,
    Detailed,
);

// Wasm stages (Component).
pub static WASM_CALLS: Def = counter(
    "Wasm.Calls",
    "shardline_wasm_calls_total",
    "Calls into a component (one per batch and stage).",
    Count,
    Summary,
);
pub static WASM_RECORDS_IN: Def = counter(
    "Wasm.RecordsIn",
    "shardline_wasm_records_in_total",
    "Records handed to the stages.",
    Count,
    Summary,
);
pub static WASM_RECORDS_OUT: Def = counter(
    "Wasm.RecordsOut",
    "shardline_wasm_records_out_total",
    "Events the stages produced.",
    Count,
    Summary,
);
pub static WASM_ERRORS: Def = counter(
    "Wasm.Errors",
    "shardline_wasm_errors_total",
    "Records the stages failed on, by kind (rejected, trap, timeout, memory, contract).",
    Count,
    Summary,
);
pub static WASM_TRAPS: Def = counter(
    "Wasm.Traps",
    "shardline_wasm_traps_total",
    "Calls that failed as a whole (trap, timeout, memory limit); the instance was replaced.",
    Count,
    Summary,
);
pub static WASM_BATCH_TIME: Def = distribution(
    "Wasm.BatchTime",
    "shardline_wasm_batch_time_milliseconds",
    "Time the stages took per batch.",
    Milliseconds,
    Summary,
    LATENCY_MS,
);
pub static WASM_RECYCLES: Def = counter(
    "Wasm.InstanceRecycles",
    "shardline_wasm_instance_recycles_total",
    "Instances replaced (after a failed call, or too much guest output).",
    Count,
    Summary,
);
pub static DEAD_LETTERS: Def = counter(
    "DeadLetters",
    "shardline_dead_letters_total",
    "Records sent to the dead-letter destination.",
    Count,
    Summary,
);

// Sinks (Sink).
pub static SINK_SENDS: Def = counter(
    "Sink.Sends",
    "shardline_sink_sends_total",
    "Messages handed to a sink.",
    Count,
    Summary,
);
pub static SINK_FAILURES: Def = counter(
    "Sink.Failures",
    "shardline_sink_failures_total",
    "Sends that failed or were not acknowledged in time (the shard reads them again).",
    Count,
    Summary,
);
pub static SINK_IN_FLIGHT: Def = gauge(
    "Sink.InFlight",
    "shardline_sink_in_flight",
    "Sends waiting for their acknowledgement.",
    Summary,
);
pub static SINK_DUPLICATES: Def = counter(
    "Sink.Duplicates",
    "shardline_sink_duplicates_total",
    "Messages of a deduplicating sink that the broker already had (a replay from a checkpoint): acknowledged, not stored again.",
    Count,
    Summary,
);
pub static SINK_ACK_LATENCY: Def = distribution(
    "Sink.AckLatency",
    "shardline_sink_ack_latency_milliseconds",
    "Time from send to acknowledgement (of the last message of the batch it was sent with), per message.",
    Milliseconds,
    Summary,
    LATENCY_MS,
);

// The CloudWatch exporter itself.
pub static PUBLISH_FAILURES: Def = counter(
    "Metrics.PublishFailures",
    "shardline_metrics_publish_failures_total",
    "PutMetricData requests that failed (their data is sent with the next one).",
    Count,
    Summary,
);
pub static PUBLISHED: Def = counter(
    "Metrics.Published",
    "shardline_metrics_published_total",
    "Metric data points CloudWatch accepted.",
    Count,
    Summary,
);

/// Every definition (for documentation and tests).
pub static ALL: &[&Def] = &[
    &RECORDS_PROCESSED,
    &DATA_BYTES_PROCESSED,
    &MILLIS_BEHIND_LATEST,
    &GET_RECORDS_SUCCESS,
    &GET_RECORDS_TIME,
    &EXPIRED_ITERATOR,
    &GET_RECORDS_THROTTLED,
    &CHECKPOINT_TIME,
    &CHECKPOINT_FAILURES,
    &CORRUPT_AGGREGATES,
    &CURRENT_LEASES,
    &RECEIVE_QUEUE_BYTES,
    &TAKEN_LEASES,
    &STOLEN_LEASES,
    &LOST_LEASES,
    &RENEW_FAILURES,
    &USER_RECORDS_RECEIVED,
    &USER_RECORDS_PUT,
    &KINESIS_RECORDS_PUT,
    &KINESIS_RECORDS_DATA_PUT,
    &USER_RECORD_EXPIRED,
    &USER_RECORDS_FAILED,
    &RETRIES_PER_RECORD,
    &BUFFERING_TIME,
    &REQUEST_TIME,
    &ALL_ERRORS,
    &ERRORS_BY_CODE,
    &WASM_CALLS,
    &WASM_RECORDS_IN,
    &WASM_RECORDS_OUT,
    &WASM_ERRORS,
    &WASM_TRAPS,
    &WASM_BATCH_TIME,
    &WASM_RECYCLES,
    &DEAD_LETTERS,
    &SINK_SENDS,
    &SINK_FAILURES,
    &SINK_IN_FLIGHT,
    &SINK_DUPLICATES,
    &SINK_ACK_LATENCY,
    &PUBLISH_FAILURES,
    &PUBLISHED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prometheus_names_follow_conventions() {
        let mut cw = std::collections::HashSet::new();
        let mut prom = std::collections::HashSet::new();
        for d in ALL {
            assert!(cw.insert(d.name), "{} twice", d.name);
            assert!(prom.insert(d.prometheus), "{} twice", d.prometheus);
            assert!(d.prometheus.starts_with("shardline_"), "{}", d.prometheus);
            assert!(
                d.prometheus
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                d.prometheus
            );
            assert_eq!(
                d.kind == Kind::Counter,
                d.prometheus.ends_with("_total"),
                "{}",
                d.prometheus
            );
            assert_eq!(
                d.kind == Kind::Distribution,
                !d.buckets.is_empty(),
                "{}",
                d.name
            );
        }
    }
}
