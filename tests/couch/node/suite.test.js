// Stock PouchDB 9 (memory adapter) against /couchdb of a running lpg-sync server.
// Run by tests/couch/test_pouchdb_suite.py: LPG_URL is the server, the demo users exist.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const PouchDB = require('pouchdb').plugin(require('pouchdb-adapter-memory'));

const URL = process.env.LPG_URL;
const USERS = {
  admin: 'admin-lpg-2026',
  driver1: 'driver1-lpg-2026',
  driver2: 'driver2-lpg-2026',
};
let n = 0;
const local = () => new PouchDB(`local-${process.pid}-${++n}`, { adapter: 'memory' });
const remote = (user, db = 'lpg') =>
  new PouchDB(`${URL}/couchdb/${db}`, { auth: { username: user, password: USERS[user] }, skip_setup: true });

async function api(method, path, token, body) {
  const r = await fetch(URL + path, {
    method,
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

const tokens = {};
async function token(user) {
  if (!tokens[user]) {
    const r = await api('POST', '/api/v1/auth/login/', null, { username: user, password: USERS[user] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    tokens[user] = r.body.access;
  }
  return tokens[user];
}

async function nativeFeed(user) {
  const t = await token(user);
  const docs = new Map();
  let since = 0;
  for (;;) {
    const r = await api('GET', `/api/v1/sync/changes?since=${since}&limit=1000`, t);
    assert.equal(r.status, 200);
    for (const row of r.body.results) docs.set(`${row.entity}:${row.id}`, row);
    if (!r.body.results.length) break;
    since = r.body.last_seq;
  }
  return docs;
}

function strip(doc) {
  const { _id, _rev, _revisions, _conflicts, ...rest } = doc;
  return rest;
}

async function assertEqualsNative(user) {
  const db = local();
  const result = await db.replicate.from(remote(user), { batch_size: 100 });
  assert.equal(result.ok, true);
  assert.equal(result.doc_write_failures, 0);
  const native = await nativeFeed(user);
  const all = await db.allDocs({ include_docs: true });
  const live = [...native.values()].filter((r) => !r.deleted);
  assert.equal(all.rows.length, live.length);
  for (const row of all.rows) {
    const want = native.get(row.id);
    assert.ok(want, `${row.id} is not in the native feed`);
    assert.deepEqual(strip(row.doc), want.doc);
  }
  return { db, ids: all.rows.map((r) => r.id) };
}

async function updateCustomer(id, name) {
  const t = await token('admin');
  const r = await api('PATCH', `/api/v1/customers/${id}/`, t, { name });
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

test('a full replication equals the native feed, as admin and as a driver', async () => {
  const admin = await assertEqualsNative('admin');
  const driver = await assertEqualsNative('driver1');
  assert.ok(admin.ids.length >= driver.ids.length);
  // a driver gets no other driver's records: driver2's own ones are missing from driver1's replica
  const other = await nativeFeed('driver2');
  const own = [...other.values()].filter((r) => r.doc && r.doc.driver !== undefined);
  for (const r of own) assert.ok(!driver.ids.includes(`${r.entity}:${r.id}`));
});

test('100 updates on the server leave one leaf and no conflict', async () => {
  const db = local();
  const source = remote('admin');
  await db.replicate.from(source);
  for (let i = 0; i < 100; i++) {
    await updateCustomer(2, `Update ${i}`);
    if (i % 10 === 9) await db.replicate.from(source);
  }
  await db.replicate.from(source);
  const doc = await db.get('customer:2', { conflicts: true, revs_info: true });
  assert.equal(doc.name, 'Update 99');
  assert.equal(doc._conflicts, undefined);
  const leaves = await db.get('customer:2', { open_revs: 'all' });
  assert.equal(leaves.length, 1);
  assert.ok(Number(doc._rev.split('-')[0]) >= 101);
});

test('a checkpoint resumes: the second replication reads only what changed', async () => {
  const db = local();
  const source = remote('driver1');
  const first = await db.replicate.from(source);
  assert.ok(first.docs_read > 0);
  const again = await db.replicate.from(source);
  assert.equal(again.docs_read, 0);
  await updateCustomer(3, 'Resumed Eating House');
  const third = await db.replicate.from(source);
  assert.equal(third.docs_read, 1);
  assert.equal((await db.get('customer:3')).name, 'Resumed Eating House');
});

test('a live replication sees a change in under 2 s', async () => {
  const db = local();
  const source = remote('driver1');
  await db.replicate.from(source);
  const rep = db.replicate.from(source, { live: true, retry: false });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    const seen = new Promise((resolve) => {
      rep.on('change', (info) => {
        if (info.docs.some((d) => d._id === 'customer:4' && d.name === 'Live Eating House')) resolve(Date.now());
      });
    });
    await updateCustomer(4, 'Live Eating House');
    const at = await Promise.race([seen, new Promise((r) => setTimeout(() => r(null), 5000))]);
    assert.ok(at !== null, 'the change did not arrive');
    assert.ok(at - started < 2000, `took ${at - started} ms`);
  } finally {
    rep.cancel();
  }
});

test('a client-side filter, doc_ids and include_docs', async () => {
  const source = remote('driver1');
  const filtered = local();
  await filtered.replicate.from(source, { filter: (doc) => doc._id.startsWith('equipment:') });
  const ids = (await filtered.allDocs()).rows.map((r) => r.id);
  assert.ok(ids.length > 0 && ids.every((id) => id.startsWith('equipment:')));
  const picked = local();
  await picked.replicate.from(source, { doc_ids: ['customer:1', 'equipment:2', 'nothing:1'] });
  assert.deepEqual((await picked.allDocs()).rows.map((r) => r.id).sort(), ['customer:1', 'equipment:2']);
  const changes = await source.changes({ include_docs: true, limit: 5 });
  assert.equal(changes.results.length, 5);
  for (const c of changes.results) assert.equal(c.doc._id, c.id);
  const selected = await source.changes({ selector: { code: 'CYL9' }, include_docs: true });
  assert.deepEqual(selected.results.map((c) => c.id), ['equipment:1']);
});

test('an unknown database is a rejected promise, not a crash', async () => {
  const db = local();
  await assert.rejects(db.replicate.from(remote('driver1', 'nosuchdb')), (err) => {
    assert.equal(err.status, 404);
    return true;
  });
  await assert.rejects(remote('driver1').get('_design/x'), (err) => err.status === 404);
  await assert.rejects(db.replicate.from(remote('driver1'), { selector: { code: { $gt: 'A' } } }), (err) => err.status === 400);
});

test('batch_size 1000', async () => {
  const db = local();
  const result = await db.replicate.from(remote('admin'), { batch_size: 1000, batches_limit: 2 });
  assert.equal(result.ok, true);
  assert.equal(result.doc_write_failures, 0);
  const native = await nativeFeed('admin');
  assert.equal((await db.allDocs()).rows.length, [...native.values()].filter((r) => !r.deleted).length);
});

test('a pushed queue: a refused change and its dependant are denied, sent twice nothing doubles, results pulled', async () => {
  const device = `node-${process.pid}`;
  const queue = local();
  await queue.bulkDocs([
    { _id: 't-1', op: 'customer.create', data: { name: 'Queued Eating House', address: '1 Queue Rd' } },
    { _id: 't-2', op: 'customer.create', data: { name: '', address: '2 Queue Rd' } },
    { _id: 't-3', op: 'meter_reading.create', data: { customer: 't-2', reading: '10.00', occurred_at: new Date().toISOString() } },
    { _id: 't-4', op: 'customer.update', data: { id: 't-1', phone: '+65 6000 0000' } },
  ]);
  const target = remote('driver1', `queue-${device}`);
  const denied = [];
  const first = await queue.replicate.to(target).on('denied', (e) => denied.push(e));
  assert.equal(first.docs_written, 2);
  assert.equal(first.doc_write_failures, 2);
  assert.equal(denied.length, 2);
  assert.match(first.errors.find((e) => e.id === 't-3').reason, /dependency_rejected/);
  // sent again, by a fresh replica of the same queue (no checkpoint): nothing is applied twice
  const copy = local();
  await copy.replicate.from(queue);
  const second = await copy.replicate.to(target);
  assert.equal(second.doc_write_failures, 2);
  const customers = await api('GET', '/api/v1/customers/?search=Queued%20Eating%20House', await token('admin'));
  const named = (customers.body.results || []).filter((c) => c.name === 'Queued Eating House');
  assert.equal(named.length, 1);
  // results come back by pull
  const results = local();
  await results.replicate.from(remote('driver1', `results-${device}`));
  const docs = Object.fromEntries((await results.allDocs({ include_docs: true })).rows.map((r) => [r.id, r.doc]));
  assert.equal(docs['t-1'].status, 'applied');
  assert.equal(docs['t-1'].entity, 'customer');
  assert.equal(docs['t-4'].status, 'applied');
  assert.equal(docs['t-2'].status, 'rejected');
  assert.equal(docs['t-3'].error.code, 'dependency_rejected');
  const rejections = await api('GET', `/api/v1/sync/rejections?device_id=${device}`, await token('admin'));
  assert.ok(rejections.body.results.some((r) => r.client_temp_id === 't-2'));
  // another driver cannot read this device's results
  await assert.rejects(local().replicate.from(remote('driver2', `results-${device}`)), (err) => err.status === 404);
});
