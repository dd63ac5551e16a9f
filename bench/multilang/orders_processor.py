#!/usr/bin/env python3
"""bench/multilang: the orders logic as a Python record processor of the KCL's
MultiLangDaemon (amazon-kclpy's v3 interface), written the way a Python developer would:
json.loads, validate, drop zero amounts, enrich, pick topics, json.dumps. The result goes
nowhere (there is no sink in a MultiLangDaemon); it is counted, and the count is written to
$ORDERS_PROGRESS_DIR/<pid> after every batch so run.sh can tell when all records are in.
Checkpoints every 10 s, as Shardline's default checkpoint interval.
"""

import json
import os
import time

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor

PREFIX = "persistent://public/default/orders-"
CHECKPOINT_SECONDS = 10


def check(order):
    if not isinstance(order, dict):
        raise ValueError("invalid order: expected a JSON object")
    for field in ("id", "customer", "region"):
        if not isinstance(order.get(field), str) or not order[field]:
            raise ValueError(f"invalid order: {field} must be a non-empty string")
    amount = order.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
        raise ValueError("invalid order: amount must be a number >= 0")
    currency = order.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isupper()):
        raise ValueError("invalid order: currency must be 3 uppercase letters")


def process_order(data):
    """(key, payload, region, topics), None (filtered out), or raises ValueError."""
    order = json.loads(data)
    check(order)
    if order["amount"] == 0:
        return None
    order["amount_cents"] = round(order["amount"] * 100)
    order["processed_by"] = "kcl-multilang-python"
    topics = [PREFIX + order["region"]]
    if order.get("priority") == "high":
        topics.append(PREFIX + "priority")
    payload = json.dumps(order, separators=(",", ":"), sort_keys=True).encode()
    return order["id"], payload, order["region"], topics


class OrdersProcessor(processor.RecordProcessorBase):
    def __init__(self):
        self.seen = 0
        self.out = 0
        self.rejected = 0
        self.last_checkpoint = time.monotonic()
        self.progress = os.path.join(os.environ["ORDERS_PROGRESS_DIR"], str(os.getpid()))

    def initialize(self, initialize_input):
        pass

    def process_records(self, process_records_input):
        last = None
        for record in process_records_input.records:
            try:
                result = process_order(record.binary_data)
                if result is not None:
                    self.out += len(result[3])
            except ValueError:
                self.rejected += 1
            self.seen += 1
            last = record.sequence_number
        with open(self.progress, "w") as f:
            f.write(f"{self.seen} {self.out} {self.rejected}\n")
        if last is not None and time.monotonic() - self.last_checkpoint >= CHECKPOINT_SECONDS:
            process_records_input.checkpointer.checkpoint(last)
            self.last_checkpoint = time.monotonic()

    def lease_lost(self, lease_lost_input):
        pass

    def shard_ended(self, shard_ended_input):
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(OrdersProcessor()).run()
