//! De-aggregation: the user records of a fetched batch. KPL aggregates are unpacked (their
//! digests checked several at a time), a record with the aggregate magic that cannot be
//! read is delivered whole and counted, as the KCL does, and after a restart what of the
//! checkpointed record was already done is skipped.

use std::sync::Arc;

use super::metrics::ShardMetrics;
use super::receive_queue;
use crate::agg::{self, Deaggregated};
use crate::wasm::bindings::SourceRecord;

/// What a Kinesis record of a fetched batch carries besides its data.
struct Head {
    arrival: i64,
    encryption: Option<aws_sdk_kinesis::types::EncryptionType>,
    /// Shared by the user records of an aggregate.
    sequence: Arc<str>,
    partition_key: String,
    /// Set on the checkpointed record after a restart: the sub-sequence number up to which
    /// it was done.
    done_up_to: Option<u64>,
}

/// The per-record data the host keeps out of the guest.
#[derive(Debug)]
pub(super) struct Meta {
    /// Shared by the user records of one KPL aggregate, and with the ack tracker.
    pub(super) sequence: Arc<str>,
    /// Position inside a KPL aggregate; `None` for a plain record.
    pub(super) sub: Option<u64>,
    pub(super) encryption: Option<aws_sdk_kinesis::types::EncryptionType>,
    /// The record's size in the receive queue.
    pub(super) bytes: u32,
}

/// The user records of a fetched batch — KPL aggregates unpacked, what a restart already
/// did skipped — each with what the host keeps of it out of the guest.
pub(super) fn unpack(
    fetched: Vec<aws_sdk_kinesis::types::Record>,
    skip: &mut Option<(String, u64)>,
    shard: &str,
    metrics: &ShardMetrics,
) -> (Vec<SourceRecord>, Vec<Meta>) {
    let n = fetched.len();
    let mut records = Vec::with_capacity(n);
    let mut metas = Vec::with_capacity(n);
    // The data of every Kinesis record first, so that the KPL aggregates among them are
    // unpacked together (their MD5s computed several at a time).
    let (mut heads, mut datas) = heads(fetched, skip);
    // Records delivered whole: (index in `records`, index in `datas`), their data moved
    // in once the unpacked aggregates no longer borrow `datas`.
    let mut whole = Vec::new();
    for (i, (head, unpacked)) in heads
        .iter_mut()
        .zip(agg::deaggregate_many(&datas))
        .enumerate()
    {
        match unpacked {
            Deaggregated::Aggregate(users) => {
                for u in users {
                    if head.done_up_to.is_some_and(|d| u.sub_sequence <= d) {
                        continue;
                    }
                    metas.push(Meta {
                        sequence: head.sequence.clone(),
                        sub: Some(u.sub_sequence),
                        encryption: head.encryption.clone(),
                        bytes: receive_queue::record_bytes(u.partition_key, u.data),
                    });
                    records.push(SourceRecord {
                        partition_key: u.partition_key.to_string(),
                        arrival_millis: head.arrival,
                        data: u.data.to_vec(),
                    });
                }
                continue;
            }
            Deaggregated::Corrupt { reason, .. } => {
                // As the KCL does: deliver it whole, and say so.
                metrics.corrupt_aggregate();
                tracing::warn!(%shard, sequence = %head.sequence, %reason,
                    "record has the KPL aggregate magic but cannot be read; delivering it whole");
            }
            Deaggregated::Plain(_) => {}
        }
        if head.done_up_to.is_some() {
            continue;
        }
        let partition_key = std::mem::take(&mut head.partition_key);
        metas.push(Meta {
            sequence: head.sequence.clone(),
            sub: None,
            encryption: head.encryption.take(),
            bytes: receive_queue::record_bytes(&partition_key, &datas[i]),
        });
        whole.push((records.len(), i));
        records.push(SourceRecord {
            partition_key,
            arrival_millis: head.arrival,
            data: Vec::new(),
        });
    }
    for (record, data) in whole {
        records[record].data = std::mem::take(&mut datas[data]);
    }
    (records, metas)
}

/// Each Kinesis record's head and, apart, its data. After a restart the iterator starts AT
/// the checkpointed record: what of it was done (all of a plain record, sub-records up to
/// the checkpoint of an aggregate) is marked in its head, and `skip` is used up.
fn heads(
    fetched: Vec<aws_sdk_kinesis::types::Record>,
    skip: &mut Option<(String, u64)>,
) -> (Vec<Head>, Vec<Vec<u8>>) {
    let now_millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut heads = Vec::with_capacity(fetched.len());
    let mut datas = Vec::with_capacity(fetched.len());
    for r in fetched {
        let done_up_to = match skip.take() {
            Some((seq, sub)) if seq == r.sequence_number => Some(sub),
            _ => None,
        };
        heads.push(Head {
            arrival: r
                .approximate_arrival_timestamp
                .as_ref()
                .map_or(now_millis, super::retrieval::arrival_millis),
            encryption: r.encryption_type,
            sequence: r.sequence_number.into(),
            partition_key: r.partition_key.unwrap_or_default(),
            done_up_to,
        });
        datas.push(r.data.into_inner());
    }
    (heads, datas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_aggregate_is_delivered_whole_and_counted() {
        let mut data = crate::agg::MAGIC.to_vec();
        data.extend_from_slice(b"not an aggregate: no protobuf, no digest");
        let record = aws_sdk_kinesis::types::Record::builder()
            .sequence_number("1")
            .partition_key("k")
            .data(aws_smithy_types::Blob::new(data.clone()))
            .build()
            .expect("a record");
        let (stream, shard) = ("corrupt-aggregates", "shardId-000000000007");
        let config = crate::config::Config::from_yaml(
            "application: app\nsource:\n  stream: orders\nsinks:\n  main:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: out\n",
            "test.yaml",
            std::path::PathBuf::from("."),
        )
        .expect("config parses");
        let metrics = ShardMetrics::new(stream, shard, &config);
        let (records, metas) = unpack(vec![record], &mut None, shard, &metrics);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].data, data);
        assert_eq!(metas[0].sub, None);

        let counted: Vec<i64> = crate::metrics::global()
            .series()
            .iter()
            .filter(|s| s.def.name == "CorruptAggregates")
            .filter(|s| s.dims.iter().any(|(_, v)| v == stream))
            .map(|s| s.scalar())
            .collect();
        assert_eq!(counted, [1]);
    }
}
