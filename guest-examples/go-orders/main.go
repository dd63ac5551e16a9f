// Orders: validate JSON orders, enrich them and route them by region (a Shardline guest).
package main

import (
	"errors"
	"fmt"
	"math"
	"regexp"

	"example.invalid/shardline"
)

var currency = regexp.MustCompile(`^[A-Z]{3}$`)

func handle(r shardline.Record, _ *shardline.Context) ([]*shardline.Output, error) {
	var order map[string]any
	if err := r.JSON(&order); err != nil {
		return nil, err
	}
	for _, field := range []string{"id", "customer", "region"} {
		if s, ok := order[field].(string); !ok || s == "" {
			return nil, fmt.Errorf("%s must be a non-empty string", field)
		}
	}
	amount, ok := order["amount"].(float64)
	if !ok || amount < 0 {
		return nil, fmt.Errorf("amount must be a non-negative number, got %v", order["amount"])
	}
	if c, _ := order["currency"].(string); !currency.MatchString(c) {
		return nil, fmt.Errorf("currency must be 3 uppercase letters, got %v", order["currency"])
	}
	if _, ok := order["priority"].(string); !ok && order["priority"] != nil {
		return nil, errors.New("priority must be a string")
	}
	if amount == 0 {
		return nil, nil // nothing to ship: filtered out
	}
	cents := math.Round(amount * 100)
	if cents > 1<<53-1 {
		return nil, shardline.Reject(shardline.Transform, "amount %v is too large for cents", amount)
	}
	order["amount_cents"] = int64(cents)
	order["processed_by"] = shardline.Setting("processed_by", "shardline-orders")
	out, err := shardline.JSON(order)
	if err != nil {
		return nil, err
	}
	prefix, region := shardline.Setting("topic_prefix", "persistent://public/default/orders-"), order["region"].(string)
	out.Key(order["id"].(string)).Property("order.region", region).ToTopic(prefix + region)
	if order["priority"] == "high" {
		out.ToTopic(prefix + "priority")
	}
	return []*shardline.Output{out}, nil
}

func init() { shardline.OnRecord(handle) }

func main() {}
