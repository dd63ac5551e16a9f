// Bench prototype: the orders logic as a JavaScript developer writes it (JSON.parse /
// JSON.stringify), on the bare WIT bindings, to measure what an idiomatic JS guest costs.
// Not an example: the SDK-based examples replace it.
// Build: shardline build-guest bench/guests/js-idiomatic
import { setting } from "shardline:connector/host@0.1.0";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function check(order) {
  if (typeof order !== "object" || order === null || Array.isArray(order))
    throw new Error("invalid order: expected a JSON object");
  for (const f of ["id", "customer", "region"])
    if (typeof order[f] !== "string" || order[f] === "")
      throw new Error(`invalid order: ${f} must be a non-empty string`);
  if (typeof order.amount !== "number" || order.amount < 0)
    throw new Error("invalid order: amount must be a number >= 0");
  if (!/^[A-Z]{3}$/.test(order.currency ?? ""))
    throw new Error("invalid order: currency must be 3 uppercase letters");
}

export const processor = {
  process(_ctx, records) {
    const prefix = setting("topic_prefix") ?? "persistent://public/default/orders-";
    const processedBy = setting("processed_by") ?? "shardline-orders";
    const outputs = [];
    const rejections = [];
    records.forEach((record, index) => {
      let order;
      try {
        order = JSON.parse(decoder.decode(record.data));
        check(order);
      } catch (e) {
        rejections.push({ index, stage: "deserialize", reason: e.message });
        return;
      }
      if (order.amount === 0) return;
      order.amount_cents = Math.round(order.amount * 100);
      order.processed_by = processedBy;
      const topics = [prefix + order.region];
      if (order.priority === "high") topics.push(prefix + "priority");
      outputs.push({
        index,
        event: {
          key: order.id,
          payload: encoder.encode(JSON.stringify(order)),
          properties: [["order.region", order.region]],
          eventTimeMillis: undefined,
        },
        destinations: topics.map((topic) => ({ topic })),
      });
    });
    return { outputs, rejections };
  },
};
