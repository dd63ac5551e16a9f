// Shardline guest SDK for JavaScript: write `onRecord((record, ctx) => …)`, get a component
// of the `pipeline` world of shardline:connector@0.1.0 (built by componentize-js).
//
// The host calls `processor.process` once per batch; this module calls your function once
// per record, turns what it returns into outputs (nothing/null = filter out, one Output, or
// an array of them) and whatever it throws into a rejection of that record alone.

import * as host from "shardline:connector/host@0.1.0";

const STAGES = new Set(["deserialize", "transform", "route"]);

/** Thrown (or returned from a batch handler) to refuse a record with a reason. */
export class Reject extends Error {
  /** @param {string} reason @param {{stage?: "deserialize"|"transform"|"route"}} [opts] */
  constructor(reason, { stage = "deserialize" } = {}) {
    super(reason);
    if (!STAGES.has(stage)) throw new TypeError(`unknown stage ${stage}`);
    this.name = "Reject";
    this.stage = stage;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** One output record: build it with `Output.json(value)` or `Output.bytes(data)`. */
export class Output {
  constructor(payload) {
    this.payload = payload;
    this._key = undefined;
    this._properties = [];
    this._eventTime = undefined;
    this._destinations = [];
  }
  /** A payload of raw bytes (Uint8Array) or a string (written as UTF-8). */
  static bytes(data) {
    return new Output(typeof data === "string" ? encoder.encode(data) : data);
  }
  /** A payload of JSON from any value `JSON.stringify` accepts. */
  static json(value) {
    return new Output(encoder.encode(JSON.stringify(value)));
  }
  /** Message key (default: the record's partition key). */
  key(key) {
    this._key = String(key);
    return this;
  }
  /** A message property (Pulsar); added to the kinesis.* ones. */
  property(name, value) {
    this._properties.push([String(name), String(value)]);
    return this;
  }
  /** Event time in milliseconds since the epoch (a number or a Date). */
  eventTime(millis) {
    this._eventTime = BigInt(Math.trunc(millis instanceof Date ? millis.getTime() : millis));
    return this;
  }
  /** Also send to this topic (Pulsar) or stream (Kinesis) of the default sink. */
  toTopic(topic) {
    return this.to({ topic });
  }
  /**
   * Also send to a destination: `{sink, topic, partitionKey, explicitHashKey}`, each
   * optional (`sink` is a sink name of the config; the last two are for Kinesis sinks).
   * No destination at all means the default sink's default topic.
   */
  to({ sink, topic, partitionKey, explicitHashKey } = {}) {
    this._destinations.push({ sink, topic, partitionKey, explicitHashKey });
    return this;
  }
}

/** One source record. `arrivalMillis` is a Number, `data` a Uint8Array. */
class Record {
  constructor(index, r) {
    this.index = index;
    this.partitionKey = r.partitionKey;
    this.arrivalMillis = Number(r.arrivalMillis);
    this.data = r.data;
  }
  /** The data as text; throws on bytes that are not UTF-8. */
  text() {
    return decoder.decode(this.data);
  }
  /** The data parsed as JSON (`JSON.parse` of `text()`). */
  json() {
    return JSON.parse(this.text());
  }
}

/** The stage's `settings:` from the config, with defaults and typed getters. */
export const settings = {
  _all: undefined,
  /** Every setting as a Map. */
  all() {
    if (this._all === undefined) this._all = new Map(host.settings());
    return this._all;
  },
  get(key, fallback = undefined) {
    const v = this.all().get(key);
    return v === undefined ? fallback : v;
  },
  getInt(key, fallback = undefined) {
    return this._typed(key, fallback, (v) => (/^[+-]?\d+$/.test(v.trim()) ? Number.parseInt(v, 10) : NaN), "an integer");
  },
  getFloat(key, fallback = undefined) {
    return this._typed(key, fallback, (v) => (v.trim() === "" ? NaN : Number(v)), "a number");
  },
  getBool(key, fallback = undefined) {
    const table = { true: true, yes: true, on: true, 1: true, false: false, no: false, off: false, 0: false };
    return this._typed(key, fallback, (v) => table[v.trim().toLowerCase()] ?? NaN, "a boolean");
  },
  _typed(key, fallback, parse, what) {
    const v = this.get(key);
    if (v === undefined) return fallback;
    const parsed = parse(v);
    if (Number.isNaN(parsed)) throw new TypeError(`setting ${key}: ${JSON.stringify(v)} is not ${what}`);
    return parsed;
  },
};

/** Logging through the host's log, tagged with the component's name. */
export const log = {
  trace: (msg) => host.log("trace", String(msg)),
  debug: (msg) => host.log("debug", String(msg)),
  info: (msg) => host.log("info", String(msg)),
  warn: (msg) => host.log("warn", String(msg)),
  error: (msg) => host.log("error", String(msg)),
};

let recordHandler;
let batchHandler;

/** Registers the per-record function: `(record, ctx) => Output | Output[] | null`. */
export function onRecord(fn) {
  recordHandler = fn;
}

/**
 * Registers a batch-level function instead: `(records, ctx) => results`, one result per
 * record, in order, each what `onRecord`'s function would return, or an Error to reject it.
 */
export function onBatch(fn) {
  batchHandler = fn;
}

function reasonOf(e) {
  if (e instanceof Error) return e instanceof Reject ? e.message : `${e.name}: ${e.message}`;
  return String(e);
}

function collect(index, result, outputs, rejections) {
  if (result instanceof Error) {
    rejections.push({ index, stage: result.stage ?? "deserialize", reason: reasonOf(result) });
    return;
  }
  if (result === undefined || result === null) return;
  for (const o of Array.isArray(result) ? result : [result]) {
    if (!(o instanceof Output)) {
      rejections.push({ index, stage: "deserialize", reason: `the handler returned ${typeof o}, not an Output` });
      return;
    }
    outputs.push({
      index,
      event: { key: o._key, payload: o.payload, properties: o._properties, eventTimeMillis: o._eventTime },
      destinations: o._destinations,
    });
  }
}

/** The `processor` export: what the host calls, once per batch. */
export const processor = {
  process(ctx, sourceRecords) {
    const context = {
      streamName: ctx.streamName,
      shardId: ctx.shardId,
      millisBehindLatest: ctx.millisBehindLatest === undefined ? undefined : Number(ctx.millisBehindLatest),
      settings,
      log,
    };
    const records = sourceRecords.map((r, i) => new Record(i, r));
    const outputs = [];
    const rejections = [];
    if (batchHandler) {
      let results;
      try {
        results = batchHandler(records, context);
      } catch (e) {
        results = records.map(() => e);
      }
      records.forEach((r, i) => collect(i, results?.[i], outputs, rejections));
    } else if (recordHandler) {
      for (const record of records) {
        let result;
        try {
          result = recordHandler(record, context);
        } catch (e) {
          result = e instanceof Error ? e : new Error(String(e));
        }
        collect(record.index, result, outputs, rejections);
      }
    } else {
      throw new Error("no handler: call onRecord(fn) or onBatch(fn) in your module");
    }
    return { outputs, rejections };
  },
};
