#!/usr/bin/env python3
"""KPL aggregation throughput of AWS's aws-kinesis-agg, on the same input as Shardline's
criterion bench (host/benches/agg.rs); bench/agg/run.sh runs both and prints the comparison.

Input: record i has x = splitmix64(i), partition key "pk-%04d" % (x % 1000) and data the 8
little-endian bytes of x repeated to the record size; no explicit hash keys. Keys are handed
over as UTF-8 bytes: with str keys the library over-estimates sizes and closes aggregates
early, so its output would differ from the KPL's; with bytes it writes exactly the bytes
Shardline writes (the `check` line, compared by run.sh).

Aggregation: RecordAggregator(max_size=51200), add_user_record per record, each full
aggregate serialized with get_contents() (protobuf serialization + MD5), then clear_and_get.
De-aggregation: deaggregator.iter_deaggregate_records over Boto3-shaped records (raw bytes
in; the library returns each user record's data base64-encoded, as its API does).

Time is the process's CPU time (time.process_time), as the Rust side measures its thread's:
both run on one thread, and on a shared machine wall time mostly measures the neighbours.

Prints one JSON object per line: {"check": ...} per case, then {"result": ...} per
measurement (median of the runs: CPU seconds, and wall seconds for reference).
"""

import argparse
import hashlib
import json
import statistics
import sys
import time

from aws_kinesis_agg import aggregator, deaggregator

MAX_SIZE = 51200
MASK = (1 << 64) - 1
CASES = [("100k-100B", 100_000, 100), ("100k-1KiB", 100_000, 1024)]


def splitmix64(i):
    z = ((i + 1) * 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def make_input(n, size):
    records = []
    for i in range(n):
        x = splitmix64(i)
        data = (x.to_bytes(8, "little") * ((size + 7) // 8))[:size]
        records.append((b"pk-%04d" % (x % 1000), data))
    return records


def aggregate(records):
    agg = aggregator.RecordAggregator(max_size=MAX_SIZE)
    out = []
    for pk, data in records:
        full = agg.add_user_record(pk, data)
        if full is not None:
            out.append(full.get_contents()[2])
    last = agg.clear_and_get()
    if last is not None:
        out.append(last.get_contents()[2])
    return out


def deaggregate(kinesis_records):
    return list(deaggregator.iter_deaggregate_records(kinesis_records, data_format="Boto3"))


def median_time(fn, runs):
    cpu, wall = [], []
    result = None
    for _ in range(runs):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return (statistics.median(cpu), statistics.median(wall)), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median)")
    args = parser.parse_args()
    for name, n, size in CASES:
        records = make_input(n, size)
        seconds, aggregates = median_time(lambda: aggregate(records), args.runs)
        md5 = hashlib.md5()
        for a in aggregates:
            md5.update(a)
        print(json.dumps({"check": [name, len(aggregates), md5.hexdigest()]}), flush=True)
        print(json.dumps({"result": ["aggregate", name, n, n * size, *seconds]}), flush=True)

        kinesis_records = [
            {
                "SequenceNumber": str(i),
                "PartitionKey": "pk",
                "ApproximateArrivalTimestamp": 0,
                "Data": a,
            }
            for i, a in enumerate(aggregates)
        ]
        seconds, users = median_time(lambda: deaggregate(kinesis_records), args.runs)
        if len(users) != n:
            sys.exit(f"{name}: de-aggregated {len(users)} user records, expected {n}")
        print(json.dumps({"result": ["deaggregate", name, n, n * size, *seconds]}), flush=True)


if __name__ == "__main__":
    main()
