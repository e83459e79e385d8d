// A server that costs nothing, to measure what a replicating client can do on its own.
//   node replay.js <port> <upstream base URL>
// First it proxies every request to the upstream and records each answer, keyed by method and URL (answers to
// the same key kept in order: every `_bulk_get` POST has the same URL). After `POST /__replay__` it answers every
// request from that recording, in the same order per key, without asking the upstream and without computing
// anything. A replication that starts from an empty database sends the same requests again, so replaying it
// measures the client alone: the fastest any server could be for it on this machine. Listens on 127.0.0.1 only.
'use strict';
const http = require('http');

const [port, upstream] = process.argv.slice(2);
const up = new URL(upstream);
const agent = new http.Agent({ keepAlive: true });
const recorded = new Map();
const cursor = new Map();
let replaying = false;

function answer(res, hit) {
  res.writeHead(hit.status, hit.headers);
  res.end(hit.body);
}

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/__replay__') {
        replaying = true;
        cursor.clear();
        res.end('{"ok":true}');
        return;
      }
      const key = `${req.method} ${req.url}`;
      if (replaying) {
        const list = recorded.get(key) || [];
        const i = cursor.get(key) || 0;
        cursor.set(key, i + 1);
        const hit = list[Math.min(i, list.length - 1)];
        if (hit) answer(res, hit);
        else answer(res, { status: 404, headers: { 'content-type': 'application/json' }, body: '{"error":"not_found","reason":"not recorded"}' });
        return;
      }
      const headers = { ...req.headers, host: up.host };
      const proxied = http.request(
        { host: up.hostname, port: up.port, method: req.method, path: req.url, headers, agent },
        (r) => {
          const out = [];
          r.on('data', (c) => out.push(c));
          r.on('end', () => {
            const body = Buffer.concat(out);
            const h = { ...r.headers, 'content-length': body.length };
            delete h['transfer-encoding'];
            delete h.connection;
            const hit = { status: r.statusCode, headers: h, body };
            if (!recorded.has(key)) recorded.set(key, []);
            recorded.get(key).push(hit);
            answer(res, hit);
          });
        },
      );
      proxied.on('error', (e) => answer(res, { status: 502, headers: {}, body: String(e) }));
      proxied.end(Buffer.concat(chunks));
    });
  })
  .listen(Number(port), '127.0.0.1', () => console.log('ready'));
