"""{{name}}: a Shardline guest. Every record is a JSON event with a "type"; it is stamped
and routed to the topic of its type."""

import shardline
from shardline import Output, Reject, settings


@shardline.on_record
def handle(record, ctx):
    event = record.json()  # not JSON: rejected
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise Reject('an event needs a "type" string')
    if event["type"] == "ping":
        return None  # filtered out
    event["seen_by"] = settings.get("seen_by", "{{name}}")
    prefix = settings.get("topic_prefix", "persistent://public/default/events-")
    return Output.json(event, key=record.partition_key).to(prefix + event["type"])
