// bench/dynamodb/lease_ops.mjs — what a KCL-style lease table needs from a DynamoDB server,
// checked and timed over the plain DynamoDB JSON protocol (no SDK, so any server can be
// compared with the same client):
//   * conditional PutItem (attribute_not_exists) and its ConditionalCheckFailedException,
//   * conditional UpdateItem on leaseCounter AND leaseOwner (renew), a lost race refused,
//   * conditional DeleteItem, consistent paginated Scan (Limit + ExclusiveStartKey),
//   * throughput of renewals: one caller, and 8 callers at once.
// Usage: node bench/dynamodb/lease_ops.mjs http://127.0.0.1:8000 [renewals]
// Prints one line per check and the rates; exits 1 when a check fails.
const endpoint = process.argv[2] ?? 'http://127.0.0.1:8000';
const renewals = Number(process.argv[3] ?? 2000);
const table = `lease-ops-${process.pid}-${Date.now()}`;
let failed = 0;

async function call(op, body) {
  const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '');
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-amz-json-1.0',
      'X-Amz-Target': `DynamoDB_20120810.${op}`,
      'X-Amz-Date': amzDate,
      Authorization: 'AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/dynamodb/aws4_request, ' +
        'SignedHeaders=host;x-amz-date, Signature=0000',
    },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  return { ok: res.ok, json };
}

function check(name, cond, detail = '') {
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${name}${detail ? ` (${detail})` : ''}`);
  if (!cond) failed++;
}

const errType = (r) => String(r.json.__type ?? '').split('#').pop();

async function main() {
  let r = await call('CreateTable', {
    TableName: table,
    AttributeDefinitions: [{ AttributeName: 'leaseKey', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'leaseKey', KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST',
  });
  check('CreateTable', r.ok, r.ok ? '' : JSON.stringify(r.json));
  for (let i = 0; i < 100; i++) {
    r = await call('DescribeTable', { TableName: table });
    if (r.json.Table?.TableStatus === 'ACTIVE') break;
    await new Promise((res) => setTimeout(res, 50));
  }
  check('table ACTIVE', r.json.Table?.TableStatus === 'ACTIVE');

  const shards = 64;
  for (let i = 0; i < shards; i++) {
    r = await call('PutItem', {
      TableName: table,
      Item: { leaseKey: { S: `shardId-${String(i).padStart(12, '0')}` }, leaseCounter: { N: '0' },
        leaseOwner: { S: 'w1' }, checkpoint: { S: 'TRIM_HORIZON' } },
      ConditionExpression: 'attribute_not_exists(#k)',
      ExpressionAttributeNames: { '#k': 'leaseKey' },
    });
    if (!r.ok) break;
  }
  check('conditional PutItem (new items)', r.ok);
  r = await call('PutItem', {
    TableName: table, Item: { leaseKey: { S: 'shardId-000000000000' }, leaseCounter: { N: '9' } },
    ConditionExpression: 'attribute_not_exists(#k)', ExpressionAttributeNames: { '#k': 'leaseKey' },
  });
  check('conditional PutItem refused on an existing key', !r.ok && errType(r) === 'ConditionalCheckFailedException', errType(r));

  const renew = (key, owner, counter) => call('UpdateItem', {
    TableName: table, Key: { leaseKey: { S: key } },
    UpdateExpression: 'SET #c = :next',
    ConditionExpression: '#c = :expected AND #o = :me',
    ExpressionAttributeNames: { '#c': 'leaseCounter', '#o': 'leaseOwner' },
    ExpressionAttributeValues: { ':next': { N: String(counter + 1) }, ':expected': { N: String(counter) }, ':me': { S: owner } },
    ReturnValues: 'ALL_NEW',
  });
  r = await renew('shardId-000000000001', 'w1', 0);
  check('conditional UpdateItem (renew)', r.ok && r.json.Attributes?.leaseCounter?.N === '1');
  r = await renew('shardId-000000000001', 'w1', 0);
  check('stale counter refused', errType(r) === 'ConditionalCheckFailedException');
  r = await renew('shardId-000000000001', 'w2', 1);
  check('other owner refused', errType(r) === 'ConditionalCheckFailedException');
  r = await call('UpdateItem', {
    TableName: table, Key: { leaseKey: { S: 'shardId-000000000002' } },
    UpdateExpression: 'SET #c = :next, #sw = if_not_exists(#sw, :zero) + :inc REMOVE #o',
    ConditionExpression: '#c = :expected',
    ExpressionAttributeNames: { '#c': 'leaseCounter', '#o': 'leaseOwner', '#sw': 'ownerSwitchesSinceCheckpoint' },
    ExpressionAttributeValues: { ':next': { N: '1' }, ':expected': { N: '0' }, ':zero': { N: '0' }, ':inc': { N: '1' } },
    ReturnValues: 'ALL_NEW',
  });
  check('if_not_exists + REMOVE', r.ok && r.json.Attributes?.ownerSwitchesSinceCheckpoint?.N === '1' && !r.json.Attributes?.leaseOwner);
  r = await call('DeleteItem', {
    TableName: table, Key: { leaseKey: { S: 'shardId-000000000003' } },
    ConditionExpression: '#cp = :end AND attribute_not_exists(#o)',
    ExpressionAttributeNames: { '#cp': 'checkpoint', '#o': 'leaseOwner' },
    ExpressionAttributeValues: { ':end': { S: 'SHARD_END' } },
  });
  check('conditional DeleteItem refused', errType(r) === 'ConditionalCheckFailedException');

  let seen = 0, pages = 0, start;
  do {
    r = await call('Scan', { TableName: table, ConsistentRead: true, Limit: 10, ExclusiveStartKey: start });
    if (!r.ok) break;
    seen += r.json.Items.length; pages++; start = r.json.LastEvaluatedKey;
  } while (start);
  check('paginated consistent Scan', seen === shards && pages >= 7, `${seen} items in ${pages} pages`);

  // Renewals: one caller, then 8 callers on 8 leases each.
  let t0 = performance.now();
  const counters = new Array(shards).fill(0);
  counters[1] = 1;
  for (let i = 0; i < renewals; i++) {
    const s = 10 + (i % 50);
    r = await renew(`shardId-${String(s).padStart(12, '0')}`, 'w1', counters[s]);
    if (!r.ok) { check('sequential renewals', false, JSON.stringify(r.json)); break; }
    counters[s]++;
  }
  const seq = renewals / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  await Promise.all([...Array(8).keys()].map(async (w) => {
    for (let i = 0; i < renewals / 8; i++) {
      const s = 10 + w * 6 + (i % 6);
      const rr = await renew(`shardId-${String(s).padStart(12, '0')}`, 'w1', counters[s]);
      if (!rr.ok) { failed++; return; }
      counters[s]++;
    }
  }));
  const par = renewals / ((performance.now() - t0) / 1000);
  console.log(`renewals/s: ${seq.toFixed(0)} (1 caller), ${par.toFixed(0)} (8 callers), ${renewals} each`);
  await call('DeleteTable', { TableName: table });
  console.log(failed ? `${failed} checks failed` : 'all checks passed');
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
