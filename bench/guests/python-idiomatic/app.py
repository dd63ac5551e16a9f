"""Bench prototype: the orders logic as a Python developer writes it (json.loads/json.dumps),
on the bare WIT bindings, to measure what an idiomatic Python guest costs. Not an example:
the SDK-based examples replace it. Build: shardline build-guest bench/guests/python-idiomatic
"""

import json

from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import Destination, Event, Output, Processed, Rejection, Stage

REQUIRED = ("id", "customer", "region")


def check(order):
    if not isinstance(order, dict):
        raise ValueError("invalid order: expected a JSON object")
    for field in REQUIRED:
        if not isinstance(order.get(field), str) or not order[field]:
            raise ValueError(f"invalid order: {field} must be a non-empty string")
    amount = order.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
        raise ValueError("invalid order: amount must be a number >= 0")
    currency = order.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isupper()):
        raise ValueError("invalid order: currency must be 3 uppercase letters")


class Processor(exports.Processor):
    def process(self, ctx, records):
        prefix = host.setting("topic_prefix") or "persistent://public/default/orders-"
        processed_by = host.setting("processed_by") or "shardline-orders"
        outputs, rejections = [], []
        for i, record in enumerate(records):
            try:
                order = json.loads(record.data)
                check(order)
            except ValueError as e:
                rejections.append(Rejection(i, Stage.DESERIALIZE, str(e)))
                continue
            if order["amount"] == 0:
                continue
            order["amount_cents"] = round(order["amount"] * 100)
            order["processed_by"] = processed_by
            topics = [prefix + order["region"]]
            if order.get("priority") == "high":
                topics.append(prefix + "priority")
            payload = json.dumps(order, separators=(",", ":"), sort_keys=True).encode()
            event = Event(order["id"], payload, [("order.region", order["region"])], None)
            outputs.append(Output(i, event, [Destination(None, t, None, None) for t in topics]))
        return Processed(outputs, rejections)
