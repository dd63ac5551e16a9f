// {{name}}: a Shardline guest. Every record is a JSON event with a "type"; it is stamped
// and routed to the topic of its type.
import { onRecord, Output, Reject, settings } from "./shardline.js";

onRecord((record) => {
  const event = record.json(); // not JSON: rejected
  if (typeof event?.type !== "string") throw new Reject('an event needs a "type" string');
  if (event.type === "ping") return null; // filtered out
  event.seen_by = settings.get("seen_by", "{{name}}");
  const prefix = settings.get("topic_prefix", "persistent://public/default/events-");
  return Output.json(event).key(record.partitionKey).toTopic(prefix + event.type);
});
