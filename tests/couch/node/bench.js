// Benchmark driver (tests/bench/couch.py): one stock PouchDB 9 replication, timed.
//   node bench.js pull <db url> <user> <password> <batch_size>
//   node bench.js push <db url> <user> <password> <batch_size> <count> <prefix>
//   node bench.js ceiling - - - <batch_size> <count>   (the memory adapter alone: bulkDocs new_edits=false)
// Prints {"docs": n, "seconds": s, "failures": f}.
'use strict';
const PouchDB = require('pouchdb').plugin(require('pouchdb-adapter-memory'));

(async () => {
  const [mode, url, username, password, batch, count, prefix] = process.argv.slice(2);
  const auth = username ? { auth: { username, password } } : {};
  const remote = mode === 'ceiling' ? null : new PouchDB(url, { ...auth, skip_setup: true });
  const local = new PouchDB(`bench-${process.pid}`, { adapter: 'memory' });
  let result;
  let started;
  if (mode === 'ceiling') {
    const docs = [];
    for (let i = 0; i < Number(count); i++) {
      docs.push({ _id: `transaction:${i}`, _rev: `1-${i.toString(16).padStart(32, '0')}`, amount: '12.70', customer: 3,
        id: i, items: [{ equipment: 'CYL14', quantity: 2, unit_price: '6.35' }], status: 'confirmed', truck: 2, version: 1 });
    }
    started = process.hrtime.bigint();
    for (let i = 0; i < docs.length; i += Number(batch)) {
      await local.bulkDocs({ docs: docs.slice(i, i + Number(batch)), new_edits: false });
    }
    result = { docs_written: docs.length, doc_write_failures: 0, docs_read: docs.length };
  } else if (mode === 'pull') {
    started = process.hrtime.bigint();
    result = await local.replicate.from(remote, { batch_size: Number(batch), batches_limit: 4 });
  } else {
    const docs = [];
    for (let i = 0; i < Number(count); i++) {
      docs.push({
        _id: `${prefix}-${i}`,
        op: 'customer.create',
        data: { name: `Bench Eating House ${i}`, address: `${i} Jurong Port Rd`, email: `bench${i}@example.sg` },
      });
    }
    for (let i = 0; i < docs.length; i += 1000) await local.bulkDocs(docs.slice(i, i + 1000));
    started = process.hrtime.bigint();
    result = await local.replicate.to(remote, { batch_size: Number(batch), batches_limit: 4 });
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const docs = mode === 'pull' ? result.docs_written : result.docs_written;
  console.log(JSON.stringify({ docs, seconds, failures: result.doc_write_failures, read: result.docs_read }));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
