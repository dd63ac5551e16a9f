package shardline

// The glue between the generated bindings (internal/wit, from `wit-bindgen go`) and this
// package's own types.

import (
	exportprocessor "example.invalid/shardline/internal/wit/export_shardline_connector_processor"
	"example.invalid/shardline/internal/wit/shardline_connector_host"
	types "example.invalid/shardline/internal/wit/shardline_connector_types"
	_ "example.invalid/shardline/internal/wit/wit_exports" // the //go:wasmexport functions
	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

func init() {
	exportprocessor.Handler = process
}

func hostSettings() map[string]string {
	pairs := shardline_connector_host.Settings()
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		m[p.F0] = p.F1
	}
	return m
}

func hostLog(level uint8, msg string) { shardline_connector_host.Log(level, msg) }

func optional(s string) witTypes.Option[string] {
	if s == "" {
		return witTypes.None[string]()
	}
	return witTypes.Some(s)
}

func process(wctx types.BatchContext, wrecords []types.SourceRecord) types.Processed {
	collectIfDue()
	ctx := &Context{StreamName: wctx.StreamName, ShardID: wctx.ShardId}
	if wctx.MillisBehindLatest.Tag() == witTypes.OptionSome {
		m := wctx.MillisBehindLatest.Some()
		ctx.MillisBehindLatest = &m
	}
	records := make([]Record, len(wrecords))
	for i, r := range wrecords {
		records[i] = Record{Index: i, PartitionKey: r.PartitionKey, ArrivalMillis: r.ArrivalMillis, Data: r.Data}
	}
	var out types.Processed
	out.Outputs = make([]types.Output, 0, len(records))
	for _, res := range run(ctx, records) {
		index := uint32(res.index)
		if res.err != nil {
			stage, reason := stageAndReason(res.err)
			out.Rejections = append(out.Rejections, types.Rejection{Index: index, Stage: uint8(stage), Reason: reason})
			continue
		}
		for _, o := range res.outputs {
			if o == nil {
				continue
			}
			ev := types.Event{Payload: o.Payload, Key: witTypes.None[string](), EventTimeMillis: witTypes.None[int64]()}
			if o.key != nil {
				ev.Key = witTypes.Some(*o.key)
			}
			if o.eventTime != nil {
				ev.EventTimeMillis = witTypes.Some(*o.eventTime)
			}
			for _, p := range o.properties {
				ev.Properties = append(ev.Properties, witTypes.Tuple2[string, string]{F0: p[0], F1: p[1]})
			}
			dests := make([]types.Destination, len(o.destinations))
			for i, d := range o.destinations {
				dests[i] = types.Destination{
					Sink: optional(d.Sink), Topic: optional(d.Topic),
					PartitionKey: optional(d.PartitionKey), ExplicitHashKey: optional(d.ExplicitHashKey),
				}
			}
			out.Outputs = append(out.Outputs, types.Output{Index: index, Event: ev, Destinations: dests})
		}
	}
	return out
}
