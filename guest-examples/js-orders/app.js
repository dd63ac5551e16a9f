// Orders: validate JSON orders, enrich them and route them by region (a Shardline guest).
import { onRecord, Output, Reject, settings } from "./shardline.js";

const nonEmpty = (v) => typeof v === "string" && v !== "";

function validate(order) {
  if (order === null || typeof order !== "object" || Array.isArray(order)) {
    throw new Reject("an order must be a JSON object");
  }
  for (const field of ["id", "customer", "region"]) {
    if (!nonEmpty(order[field])) throw new Reject(`${field} must be a non-empty string`);
  }
  if (!Number.isFinite(order.amount) || order.amount < 0) {
    throw new Reject(`amount must be a non-negative number, got ${JSON.stringify(order.amount)}`);
  }
  if (typeof order.currency !== "string" || !/^[A-Z]{3}$/.test(order.currency)) {
    throw new Reject(`currency must be 3 uppercase letters, got ${JSON.stringify(order.currency)}`);
  }
  if (order.priority != null && typeof order.priority !== "string") {
    throw new Reject("priority must be a string");
  }
  return order;
}

onRecord((record) => {
  const prefix = settings.get("topic_prefix", "persistent://public/default/orders-");
  const order = validate(record.json());
  if (order.amount === 0) return null; // nothing to ship: filtered out
  const cents = Math.round(order.amount * 100);
  if (cents > Number.MAX_SAFE_INTEGER) {
    throw new Reject(`amount ${order.amount} is too large for cents`, { stage: "transform" });
  }
  const out = Output.json({ ...order, amount_cents: cents, processed_by: settings.get("processed_by", "shardline-orders") })
    .key(order.id)
    .property("order.region", order.region)
    .toTopic(prefix + order.region);
  if (order.priority === "high") out.toTopic(prefix + "priority");
  return out;
});
