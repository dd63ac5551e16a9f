#!/usr/bin/env python3
"""KPL aggregation through AWS's reference implementation, aws-kinesis-agg, for
tests/it/agg_interop.rs: one JSON request on stdin, one JSON answer on stdout. Bytes travel as
hex, keys as JSON strings (exact for any Unicode text).

Requests ("op"):

  aggregate    {"max_size": N, "key_type": "bytes"|"str",
                "records": [{"pk": str, "ehk": str|null, "data": hex}]}
               RecordAggregator(max_size), add_user_record for each, then clear_and_get.
               -> {"aggregates": [{"pk": str, "ehk": str|null, "data": hex,
                                   "estimated_size": int}]}
               key_type "bytes" hands the keys over UTF-8 encoded, "str" as str: the library
               estimates sizes differently for the two (see the test).

  deaggregate  {"records": [hex]}
               deaggregator.iter_deaggregate_records on each record (Lambda event format:
               base64 data in, base64 data out; converted from and to hex here).
               -> {"results": [{"records": [{"pk", "ehk", "data", "sub", "aggregated"}],
                                "log": what the library printed on stderr}]}

  parse        {"messages": [hex]}: the protobuf message between magic and digest, parsed
               by Google's protobuf with the library's schema (messages_pb2), plus the checks
               that protobuf itself leaves to the reader, so the test can compare.
               -> {"results": [{"ok": false, "error": str}
                              | {"ok": true, "pk_table": [str|null], "ehk_table": [str|null],
                                 "records": [{"pk_index", "ehk_index"|null, "data": hex}],
                                 "initialized": bool, "utf8": bool}]}
               A table entry that is not valid UTF-8 comes back from protobuf as bytes and is
               reported as null, with "utf8": false (tags included).
"""

import base64
import contextlib
import io
import json
import os
import sys

import aws_kinesis_agg
from aws_kinesis_agg import aggregator, deaggregator

# The library imports its generated code as top-level modules (it puts its own folder on
# sys.path when aggregator/deaggregator are imported, above).
import messages_pb2  # noqa: E402




def text(value):
    """A key as the library returns it: str, or bytes when it was given bytes."""
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8")


def aggregate(request):
    as_bytes = request["key_type"] == "bytes"
    key = (lambda k: k.encode("utf-8")) if as_bytes else (lambda k: k)
    agg = aggregator.RecordAggregator(max_size=request["max_size"])
    done = []
    for r in request["records"]:
        ehk = None if r["ehk"] is None else key(r["ehk"])
        full = agg.add_user_record(key(r["pk"]), bytes.fromhex(r["data"]), ehk)
        if full is not None:
            done.append(full)
    last = agg.clear_and_get()
    if last is not None:
        done.append(last)
    out = []
    for record in done:
        pk, ehk, data = record.get_contents()
        out.append(
            {
                "pk": text(pk),
                "ehk": text(ehk),
                "data": data.hex(),
                "estimated_size": record.get_size_bytes(),
            }
        )
    return {"aggregates": out}


def deaggregate(request):
    results = []
    for i, data in enumerate(request["records"]):
        event = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "sequenceNumber": str(i),
                "partitionKey": "outer",
                "approximateArrivalTimestamp": 0,
                "data": base64.b64encode(bytes.fromhex(data)).decode("ascii"),
            }
        }
        log = io.StringIO()
        with contextlib.redirect_stderr(log):
            users = list(deaggregator.iter_deaggregate_records(event))
        records = []
        for u in users:
            k = u["kinesis"]
            records.append(
                {
                    "pk": text(k["partitionKey"]),
                    "ehk": text(k.get("explicitHashKey")),
                    # Both paths return the data base64-encoded, as bytes or str.
                    "data": base64.b64decode(k["data"]).hex(),
                    "sub": k.get("subSequenceNumber"),
                    "aggregated": k.get("aggregated", False),
                }
            )
        results.append({"records": records, "log": log.getvalue()})
    return {"results": results}


def parse(request):
    results = []
    for message in request["messages"]:
        m = messages_pb2.AggregatedRecord()
        try:
            m.ParseFromString(bytes.fromhex(message))
        except Exception as e:  # DecodeError; anything else is reported the same way
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
            continue
        utf8 = True

        def string(value):
            nonlocal utf8
            if isinstance(value, str):
                return value
            utf8 = False
            return None

        pk_table = [string(k) for k in m.partition_key_table]
        ehk_table = [string(k) for k in m.explicit_hash_key_table]
        records = []
        for r in m.records:
            for t in r.tags:
                string(t.key)
                if t.HasField("value"):
                    string(t.value)
            records.append(
                {
                    "pk_index": r.partition_key_index,
                    "ehk_index": (
                        r.explicit_hash_key_index
                        if r.HasField("explicit_hash_key_index")
                        else None
                    ),
                    "data": r.data.hex(),
                }
            )
        results.append(
            {
                "ok": True,
                "pk_table": pk_table,
                "ehk_table": ehk_table,
                "records": records,
                "initialized": m.IsInitialized(),
                "utf8": utf8,
            }
        )
    return {"results": results}


def main():
    request = json.load(sys.stdin)
    op = request["op"]
    handlers = {"aggregate": aggregate, "deaggregate": deaggregate, "parse": parse}
    if op == "version":
        from importlib.metadata import version

        from google.protobuf.internal import api_implementation

        answer = {
            "aws-kinesis-agg": version("aws-kinesis-agg"),
            "protobuf": version("protobuf"),
            "protobuf_backend": api_implementation.Type(),
            "max_bytes_per_record": aws_kinesis_agg.MAX_BYTES_PER_RECORD,
            "python": sys.version.split()[0],
            "module": os.path.dirname(aws_kinesis_agg.__file__),
        }
    else:
        answer = handlers[op](request)
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
