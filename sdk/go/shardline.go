// Package shardline writes Shardline components in Go: one function per record.
//
//	package main
//
//	import "example.invalid/shardline/sdk/go/shardline"
//
//	func init() {
//		shardline.OnRecord(func(r shardline.Record, ctx *shardline.Context) ([]*shardline.Output, error) {
//			var event map[string]any
//			if err := r.JSON(&event); err != nil {
//				return nil, err // rejected, stage "deserialize"
//			}
//			out, err := shardline.JSON(event)
//			if err != nil {
//				return nil, err
//			}
//			return []*shardline.Output{out.ToTopic(shardline.Setting("topic", "events"))}, nil
//		})
//	}
//
//	func main() {}
//
// The host calls the component once per batch (the processor export of the pipeline world
// of shardline:connector@0.1.0); this package calls your function for every record and
// builds the one answer. An error rejects that record alone (with its index and a stage:
// "deserialize" unless it is a [Rejection]), so one bad record never fails its batch.
//
// Build with mainline Go for GOOS=wasip1 GOARCH=wasm -buildmode=c-shared, then
// the WIT world embedded and the WASI preview1 reactor adapter added (shardline build-guest).
//
// # Garbage collection
//
// The Go runtime may start a collection inside any allocation, including the ones the host
// makes through cabi_realloc while it writes a batch into the guest; the collector then
// reads clocks, and the component model forbids calling out of an instance at that moment
// (the call traps with "cannot leave component instance"). This package therefore turns
// the automatic collector off (debug.SetGCPercent(-1) in init) and collects itself, from
// inside the export, once GCThreshold bytes were allocated since the last collection.
// Never call debug.SetMemoryLimit in a component: it turns collections inside allocations
// back on.
package shardline

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Stage names the stage that refused a record.
type Stage uint8

const (
	Deserialize Stage = iota
	Transform
	Route
)

func (s Stage) String() string {
	switch s {
	case Transform:
		return "transform"
	case Route:
		return "route"
	default:
		return "deserialize"
	}
}

// Rejection is an error that names the stage refusing a record.
type Rejection struct {
	Stage  Stage
	Reason string
}

func (r *Rejection) Error() string { return r.Reason }

// Reject makes a rejection at a stage, with a fmt.Sprintf reason.
func Reject(stage Stage, format string, args ...any) error {
	return &Rejection{Stage: stage, Reason: fmt.Sprintf(format, args...)}
}

// Record is one Kinesis record of the batch.
type Record struct {
	Index         int
	PartitionKey  string
	ArrivalMillis int64
	Data          []byte
}

// Text is the data as a string, or an error when it is not UTF-8.
func (r Record) Text() (string, error) {
	if !utf8.Valid(r.Data) {
		return "", Reject(Deserialize, "not UTF-8")
	}
	return string(r.Data), nil
}

// JSON decodes the data into v (encoding/json), refusing bytes that are not UTF-8.
func (r Record) JSON(v any) error {
	if !utf8.Valid(r.Data) {
		return Reject(Deserialize, "not UTF-8")
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		return Reject(Deserialize, "invalid JSON: %v", err)
	}
	return nil
}

// Context is what is the same for the whole batch.
type Context struct {
	StreamName         string
	ShardID            string
	MillisBehindLatest *uint64
}

// Destination says where an output goes; zero fields mean the defaults.
type Destination struct {
	Sink            string // a sink name of the config ("": the default sink)
	Topic           string // Pulsar topic or Kinesis stream ("": the sink's default)
	PartitionKey    string // Kinesis partition key / Pulsar key for this destination
	ExplicitHashKey string // Kinesis explicit hash key, decimal
}

// Output is one message to publish; build it with [Bytes] or [JSON].
type Output struct {
	Payload      []byte
	key          *string
	properties   [][2]string
	eventTime    *int64
	destinations []Destination
}

// Bytes makes an output with this payload.
func Bytes(payload []byte) *Output { return &Output{Payload: payload} }

// JSON makes an output whose payload is v as JSON (encoding/json).
func JSON(v any) (*Output, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, Reject(Transform, "cannot write JSON: %v", err)
	}
	return &Output{Payload: b}, nil
}

// Key sets the message key (default: the record's partition key).
func (o *Output) Key(key string) *Output { o.key = &key; return o }

// Property adds a message property.
func (o *Output) Property(name, value string) *Output {
	o.properties = append(o.properties, [2]string{name, value})
	return o
}

// EventTime sets the event time, ms since the Unix epoch (default: the arrival time).
func (o *Output) EventTime(millis int64) *Output { o.eventTime = &millis; return o }

// ToTopic also sends the output to this topic (or stream) of the default sink.
func (o *Output) ToTopic(topic string) *Output { return o.To(Destination{Topic: topic}) }

// To also sends the output to d. No destination at all means the default sink's topic.
func (o *Output) To(d Destination) *Output {
	o.destinations = append(o.destinations, d)
	return o
}

// RecordFunc handles one record: nil or no outputs filters it out, an error rejects it.
type RecordFunc func(r Record, ctx *Context) ([]*Output, error)

// BatchFunc handles the whole batch: one Result per record, in order.
type BatchFunc func(records []Record, ctx *Context) []Result

// Result is what became of one record in a BatchFunc.
type Result struct {
	Outputs []*Output
	Err     error
}

var (
	recordFunc RecordFunc
	batchFunc  BatchFunc
)

// OnRecord registers the function called for every record (call it from init).
func OnRecord(fn RecordFunc) { recordFunc = fn }

// OnBatch registers a function that sees the whole batch instead.
func OnBatch(fn BatchFunc) { batchFunc = fn }

// GCThreshold is how many bytes may be allocated between two collections (see the package
// documentation).
var GCThreshold uint64 = 8 << 20

var (
	gcSample     = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocsAtLast uint64
)

func init() {
	debug.SetGCPercent(-1)
}

// collectIfDue runs a collection when GCThreshold bytes were allocated since the last one.
// Called at the start of every export call: the previous batch is garbage by then, and the
// export body is a place where the collector may read clocks.
func collectIfDue() {
	metrics.Read(gcSample)
	allocs := gcSample[0].Value.Uint64()
	if allocs-allocsAtLast >= GCThreshold {
		runtime.GC()
		allocsAtLast = allocs
	}
}

// outcome is what process returns, in the SDK's own types.
type outcome struct {
	index   int
	outputs []*Output
	err     error
}

func run(ctx *Context, records []Record) []outcome {
	results := make([]outcome, 0, len(records))
	switch {
	case batchFunc != nil:
		rs := safeBatch(records, ctx)
		for i := range records {
			if i < len(rs) {
				results = append(results, outcome{i, rs[i].Outputs, rs[i].Err})
			}
		}
	case recordFunc != nil:
		for i, r := range records {
			outs, err := safeRecord(r, ctx)
			results = append(results, outcome{i, outs, err})
		}
	default:
		for i := range records {
			results = append(results, outcome{i, nil, errors.New("no handler: call shardline.OnRecord in init")})
		}
	}
	return results
}

// safeRecord turns a panic of the handler into a rejection of its record.
func safeRecord(r Record, ctx *Context) (outs []*Output, err error) {
	defer func() {
		if p := recover(); p != nil {
			outs, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	return recordFunc(r, ctx)
}

func safeBatch(records []Record, ctx *Context) (rs []Result) {
	defer func() {
		if p := recover(); p != nil {
			rs = make([]Result, len(records))
			for i := range rs {
				rs[i].Err = fmt.Errorf("panic: %v", p)
			}
		}
	}()
	return batchFunc(records, ctx)
}

// stageAndReason splits an error into the stage and the reason of a rejection.
func stageAndReason(err error) (Stage, string) {
	var r *Rejection
	if errors.As(err, &r) {
		return r.Stage, err.Error()
	}
	return Deserialize, err.Error()
}

// --- settings ---------------------------------------------------------------------------

var settings map[string]string

func loadSettings() map[string]string {
	if settings == nil {
		settings = hostSettings()
	}
	return settings
}

// Setting is the stage's setting key, or fallback when the config does not give it.
func Setting(key, fallback string) string {
	if v, ok := loadSettings()[key]; ok {
		return v
	}
	return fallback
}

// LookupSetting is the setting and whether the config gives it.
func LookupSetting(key string) (string, bool) {
	v, ok := loadSettings()[key]
	return v, ok
}

// SettingInt is an integer setting, fallback when absent; an error when malformed.
func SettingInt(key string, fallback int64) (int64, error) {
	v, ok := LookupSetting(key)
	if !ok {
		return fallback, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return fallback, fmt.Errorf("setting %s: %q is not an integer", key, v)
	}
	return n, nil
}

// SettingFloat is a number setting, fallback when absent; an error when malformed.
func SettingFloat(key string, fallback float64) (float64, error) {
	v, ok := LookupSetting(key)
	if !ok {
		return fallback, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return fallback, fmt.Errorf("setting %s: %q is not a number", key, v)
	}
	return f, nil
}

// SettingBool is a yes/no setting (true/false, yes/no, on/off, 1/0), fallback when absent.
func SettingBool(key string, fallback bool) (bool, error) {
	v, ok := LookupSetting(key)
	if !ok {
		return fallback, nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return fallback, fmt.Errorf("setting %s: %q is not a boolean", key, v)
}

// --- logging ----------------------------------------------------------------------------

type logger struct{}

// Log writes to the host's log: shardline.Log.Info("…"), Log.Warnf("%d", n), …
var Log logger

func (logger) Trace(msg string) { hostLog(0, msg) }
func (logger) Debug(msg string) { hostLog(1, msg) }
func (logger) Info(msg string)  { hostLog(2, msg) }
func (logger) Warn(msg string)  { hostLog(3, msg) }
func (logger) Error(msg string) { hostLog(4, msg) }

func (logger) Infof(format string, args ...any)  { hostLog(2, fmt.Sprintf(format, args...)) }
func (logger) Warnf(format string, args ...any)  { hostLog(3, fmt.Sprintf(format, args...)) }
func (logger) Errorf(format string, args ...any) { hostLog(4, fmt.Sprintf(format, args...)) }
