// {{name}}: a Shardline guest. Every record is a JSON event with a "type"; it is stamped
// and routed to the topic of its type.
package main

import (
	"errors"

	"example.invalid/shardline"
)

func handle(r shardline.Record, _ *shardline.Context) ([]*shardline.Output, error) {
	var event map[string]any
	if err := r.JSON(&event); err != nil {
		return nil, err // not JSON: rejected
	}
	kind, ok := event["type"].(string)
	if !ok {
		return nil, errors.New(`an event needs a "type" string`)
	}
	if kind == "ping" {
		return nil, nil // filtered out
	}
	event["seen_by"] = shardline.Setting("seen_by", "{{name}}")
	out, err := shardline.JSON(event)
	if err != nil {
		return nil, err
	}
	prefix := shardline.Setting("topic_prefix", "persistent://public/default/events-")
	return []*shardline.Output{out.Key(r.PartitionKey).ToTopic(prefix + kind)}, nil
}

func init() { shardline.OnRecord(handle) }

func main() {}
