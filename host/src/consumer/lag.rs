//! The lag of a checkpoint, as `shardline status` shows it: how far behind the tip of its
//! shard the first record after the checkpoint is (Kinesis' `MillisBehindLatest` of a
//! one-record GetRecords from there). Two calls per shard; never used by the worker.

use aws_sdk_kinesis::types::ShardIteratorType;

use super::checkpoint::Checkpoint;

/// `Ok(None)` when there is nothing to measure (shard end, `LATEST`, `AT_TIMESTAMP`).
pub async fn millis_behind(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    checkpoint: &Checkpoint,
) -> Result<Option<i64>, String> {
    let req = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard);
    let req = match checkpoint {
        Checkpoint::Sequence { sequence, .. } => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(sequence),
        Checkpoint::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        Checkpoint::Latest | Checkpoint::AtTimestamp | Checkpoint::ShardEnd => return Ok(None),
    };
    let iterator = req
        .send()
        .await
        .map_err(|e| {
            format!(
                "stream {stream} shard {shard}: GetShardIterator: {}",
                crate::aws::describe(&e)
            )
        })?
        .shard_iterator;
    let Some(iterator) = iterator else {
        return Ok(None);
    };
    let out = client
        .get_records()
        .shard_iterator(iterator)
        .limit(1)
        .send()
        .await
        .map_err(|e| {
            format!(
                "stream {stream} shard {shard}: GetRecords: {}",
                crate::aws::describe(&e)
            )
        })?;
    Ok(out.millis_behind_latest)
}

/// `1.2s`, `3m 4s`, `2h 5m`: a duration in milliseconds for a table column.
pub fn short(ms: i64) -> String {
    let ms = ms.max(0) as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0..=59 => format!("{:.1}s", ms as f64 / 1000.0),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_durations() {
        assert_eq!(super::short(250), "250ms");
        assert_eq!(super::short(1234), "1.2s");
        assert_eq!(super::short(184_000), "3m 4s");
        assert_eq!(super::short(7_500_000), "2h 5m");
    }
}
