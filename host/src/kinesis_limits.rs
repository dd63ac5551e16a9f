//! Kinesis service limits — a record's size and partition key, a PutRecords request — and
//! the largest KPL aggregate they allow. A leaf: the config checks values against these,
//! and the producer, the Kinesis sink and dead letters work within them.

/// Data plus partition key of one Kinesis record.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Records in one PutRecords request.
pub const MAX_REQUEST_RECORDS: usize = 500;
/// Bytes (data plus partition keys) of one PutRecords request.
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// Characters of a partition key (at least 1).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;
/// The largest KPL aggregate: one Kinesis record, so with its partition key (up to 256
/// characters of up to 4 bytes each) within [`MAX_RECORD_BYTES`].
pub const MAX_AGGREGATE_BYTES: usize = MAX_RECORD_BYTES - 4 * MAX_PARTITION_KEY_CHARS;

/// Why Kinesis would refuse a record with this partition key and `data_len` bytes of data,
/// whatever its stream: the key's length, and the record's size.
pub fn check_record(partition_key: &str, data_len: usize) -> Result<(), String> {
    let chars = partition_key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(format!(
            "a partition key has 1 to {MAX_PARTITION_KEY_CHARS} characters, this one {chars}"
        ));
    }
    let size = data_len + partition_key.len();
    if size > MAX_RECORD_BYTES {
        return Err(format!(
            "data plus partition key is {size} bytes, over Kinesis's limit of {MAX_RECORD_BYTES}"
        ));
    }
    Ok(())
}
