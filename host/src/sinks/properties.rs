//! The properties that describe a Kinesis record, as the Pulsar IO Kinesis source names
//! them (`kinesis.partition.key`, …), and its arrival time as Java's `Instant.toString()`
//! prints it. Pulsar messages carry them as properties; dead letters on either sink use
//! the same names.

pub const PARTITION_KEY: &str = "kinesis.partition.key";
pub const SEQUENCE_NUMBER: &str = "kinesis.sequence.number";
pub const ARRIVAL_TIMESTAMP: &str = "kinesis.arrival.timestamp";
pub const ENCRYPTION_TYPE: &str = "kinesis.encryption.type";
pub const SHARD_ID: &str = "kinesis.shard.id";
/// Only on user records that came in a KPL aggregate (they share a sequence number).
pub const SUB_SEQUENCE_NUMBER: &str = "kinesis.sub.sequence.number";
pub const MILLIS_BEHIND_LATEST: &str = "kinesis.millis.behind.latest";

/// Milliseconds since the epoch as Java's `Instant.toString()` prints them:
/// `2026-11-22T04:06:45.120Z`, or `2026-11-22T04:06:45Z` on a whole second; before 1970
/// as well (`1969-12-31T23:59:59.999Z`), and past year 9999 with a sign, as Java does
/// (`+10000-01-01T00:00:00Z`). Any value prints: the arrival time is the service's, and a
/// host that cannot format it must not stop.
pub fn java_instant(millis: i64) -> String {
    use std::fmt::Write;
    let days = millis.div_euclid(86_400_000);
    let ms_of_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let mut s = String::with_capacity(24);
    // Errors are impossible when writing into a String.
    let _ = match year {
        0..=9999 => write!(s, "{year:04}"),
        10_000.. => write!(s, "+{year}"),
        _ => write!(s, "-{:04}", year.unsigned_abs()),
    };
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (sec, ms) = (rest / 1000, rest % 1000);
    let _ = write!(s, "-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}");
    if ms != 0 {
        let _ = write!(s, ".{ms:03}");
    }
    s.push('Z');
    s
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (H. Hinnant's
/// `civil_from_days`), for any day an `i64` of milliseconds can name.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn instants_print_like_java() {
        assert_eq!(java_instant(0), "1970-01-01T00:00:00Z");
        assert_eq!(java_instant(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(java_instant(1_763_784_405_000), "2025-11-22T04:06:45Z");
        assert_eq!(java_instant(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(java_instant(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(java_instant(-62_135_596_800_000), "0001-01-01T00:00:00Z");
        assert_eq!(java_instant(-62_167_219_200_000), "0000-01-01T00:00:00Z");
        assert_eq!(java_instant(-62_198_755_200_000), "-0001-01-01T00:00:00Z");
        assert_eq!(
            java_instant(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(java_instant(253_402_300_800_000), "+10000-01-01T00:00:00Z");
        // The extremes of the type (what Java prints for the same instants).
        assert_eq!(java_instant(i64::MAX), "+292278994-08-17T07:12:55.807Z");
        assert_eq!(java_instant(i64::MIN), "-292275055-05-16T16:47:04.192Z");
    }

    /// Every third day from 1970 to year 9994 agrees with humantime's RFC 3339 (the
    /// formatter used before, which cannot print before 1970 nor after 9999).
    #[test]
    fn instants_agree_with_rfc3339_where_both_print() {
        for day in (0..(8_030 * 365)).step_by(3) {
            let millis = day * 86_400_000 + 45_296_789; // 12:34:56.789
            let t = std::time::UNIX_EPOCH + Duration::from_millis(millis as u64);
            assert_eq!(
                java_instant(millis),
                humantime::format_rfc3339_millis(t).to_string()
            );
        }
    }
}
