#!/usr/bin/env node
// bench/multilang: the orders logic as a Node.js record processor of the KCL's
// MultiLangDaemon (npm aws-kcl), written the way a JavaScript developer would: JSON.parse,
// validate, drop zero amounts, enrich, pick topics, JSON.stringify. The result goes nowhere
// (a MultiLangDaemon has no sink); it is counted, and the count is written to
// $ORDERS_PROGRESS_DIR/<pid> after every batch so run.sh can tell when all records are in.
// Checkpoints every 10 s, as Shardline's default checkpoint interval.
"use strict";

const fs = require("fs");
const path = require("path");
const kcl = require("aws-kcl");

const PREFIX = "persistent://public/default/orders-";
const CHECKPOINT_MS = 10000;

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

/** {key, payload, region, topics}, null (filtered out), or throws. */
function processOrder(data) {
  const order = JSON.parse(Buffer.from(data, "base64").toString("utf8"));
  check(order);
  if (order.amount === 0) return null;
  order.amount_cents = Math.round(order.amount * 100);
  order.processed_by = "kcl-multilang-node";
  const topics = [PREFIX + order.region];
  if (order.priority === "high") topics.push(PREFIX + "priority");
  const payload = Buffer.from(JSON.stringify(order));
  return { key: order.id, payload, region: order.region, topics };
}

const progress = path.join(process.env.ORDERS_PROGRESS_DIR, String(process.pid));
let seen = 0;
let out = 0;
let rejected = 0;
let lastCheckpoint = Date.now();

kcl({
  initialize(input, done) {
    done();
  },
  processRecords(input, done) {
    let last = null;
    for (const record of input.records) {
      try {
        const r = processOrder(record.data);
        if (r !== null) out += r.topics.length;
      } catch (e) {
        rejected += 1;
      }
      seen += 1;
      last = record.sequenceNumber;
    }
    fs.writeFileSync(progress, `${seen} ${out} ${rejected}\n`);
    if (last !== null && Date.now() - lastCheckpoint >= CHECKPOINT_MS) {
      lastCheckpoint = Date.now();
      input.checkpointer.checkpoint(last, () => done());
    } else {
      done();
    }
  },
  leaseLost(input, done) {
    done();
  },
  shardEnded(input, done) {
    input.checkpointer.checkpoint(() => done());
  },
  shutdownRequested(input, done) {
    input.checkpointer.checkpoint(() => done());
  },
}).run();
