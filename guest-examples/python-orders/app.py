"""Orders: validate JSON orders, enrich them and route them by region (a Shardline guest)."""

import math
import re
from decimal import ROUND_HALF_UP, Decimal

import shardline
from shardline import Output, Reject, settings

CURRENCY = re.compile(r"[A-Z]{3}")


def validate(order):
    if not isinstance(order, dict):
        raise Reject("an order must be a JSON object")
    for field in ("id", "customer", "region"):
        if not isinstance(order.get(field), str) or not order[field]:
            raise Reject(f"{field} must be a non-empty string")
    amount = order.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount < math.inf:
        raise Reject(f"amount must be a non-negative number, got {amount!r}")
    if not isinstance(order.get("currency"), str) or not CURRENCY.fullmatch(order["currency"]):
        raise Reject(f"currency must be 3 uppercase letters, got {order.get('currency')!r}")
    if not isinstance(order.get("priority"), (str, type(None))):
        raise Reject("priority must be a string")
    return order


@shardline.on_record
def handle(record, ctx):
    order = validate(record.json())
    if order["amount"] == 0:
        return None  # nothing to ship: filtered out
    cents = int(Decimal(order["amount"] * 100).to_integral_value(ROUND_HALF_UP))
    if cents > 2**53 - 1:
        raise Reject(f"amount {order['amount']} is too large for cents", stage=shardline.TRANSFORM)
    order.update(amount_cents=cents, processed_by=settings.get("processed_by", "shardline-orders"))
    prefix = settings.get("topic_prefix", "persistent://public/default/orders-")
    out = Output.json(order, key=order["id"], properties={"order.region": order["region"]})
    out.to(prefix + order["region"])
    if order.get("priority") == "high":
        out.to(prefix + "priority")
    return out
