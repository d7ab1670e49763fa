// Viewer messaging against the real binary: the REST endpoints (roles, bodies, limits, the
// flood limit), the native viewer stream (WebSocket and SSE: authentication, scoping, order,
// a slow reader disconnected without growing memory), the Pusher-protocol socket's protocol
// handling (ping, private channels, bad frames), and shutdown with sockets open.
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import {WebSocket} from 'undici';
import {startServer, CLIENT_ID} from './lib/server.mjs';
import {tokenFactory, randomSecret, prodConfig, PROD_CLIENT, PROD_OWNER} from './lib/roles.mjs';
import {sleep, waitFor, nativeSocket, MEMORY_GROWTH_BOUND_KB} from './lib/streams.mjs';

// An SSE reader: records data records (parsed) and ids.
async function sseStream(srv, token, clientId = CLIENT_ID) {
  const controller = new AbortController();
  const res = await fetch(`${srv.base}/v1/e/events?client_id=${clientId}&token=${token}`,
                          {signal: controller.signal});
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const records = [];
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  (async () => {
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += decoder.decode(value, {stream: true});
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const rec = {};
          for (const line of block.split('\n')) {
            if (line.startsWith('data: ')) rec.data = JSON.parse(line.slice(6));
            if (line.startsWith('id: ')) rec.id = Number(line.slice(4));
          }
          if (rec.data) records.push(rec);
        }
      }
    } catch { /* aborted */ }
  })();
  await waitFor('the SSE ready record', () => records.length > 0);
  assert.equal(records[0].data.event, 'ready');
  records.shift();
  return {records, close: () => controller.abort()};
}

function rssKb(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
  return Number(m[1]);
}

async function metric(srv, line) {
  const r = await srv.request('GET', '/metrics');
  const found = r.text.split('\n').find((l) => l.startsWith(line + ' '));
  return found ? Number(found.split(' ').pop()) : undefined;
}

describe('REST messaging (sandbox)', () => {
  let srv;
  let t;
  before(async () => {
    srv = await startServer({stage: 'sandbox', config: {messaging: {rate_burst: 5, rate_per_minute: 1}}});
    t = tokenFactory(srv);
  });
  after(async () => { await srv.stop(); srv.cleanup(); });

  it('answers {} for each endpoint and role allowed, and refuses the others', async () => {
    const cases = [
      ['broadcast', 'viewer', {event: 'x'}, 403],
      ['broadcast', 'moderator', {event: 'x'}, 403],
      ['broadcast', 'broadcaster', {event: 'x'}, 200],
      ['broadcast', 'admin', {event: 'x'}, 200],
      ['broadcast', 'backend', {event: 'x'}, 200],
      ['extension_broadcast', 'viewer', {event: 'x'}, 403],
      ['extension_broadcast', 'broadcaster', {event: 'x'}, 403],  // not the owner
      ['extension_broadcast', 'admin', {event: 'x'}, 200],
      ['extension_broadcast', 'backend', {event: 'x'}, 200],
      ['whisper_self', 'viewer', {event: 'x'}, 200],
      ['whisper_self', 'broadcaster', {event: 'x'}, 200],
      ['pusher_broadcast', 'viewer', {event: 'sandbox:c:x'}, 403],
      ['pusher_broadcast', 'broadcaster', {event: `sandbox:${CLIENT_ID}:x`}, 200],
      ['pusher_broadcast', 'admin', {event: `sandbox:${CLIENT_ID}:x`}, 200],
    ];
    for (const [endpoint, role, body, status] of cases) {
      // A fresh user per case, so the per-caller flood limit does not interfere.
      const tok = t.as(role, {channel: 'c1', user: crypto.randomUUID().slice(0, 8)});
      const r = await srv.request('POST', endpoint, {token: tok, body});
      assert.equal(r.status, status, `${endpoint} as ${role}: ${r.text}`);
      if (status === 200) assert.deepEqual(r.json, {});
      else assert.deepEqual(r.json, {reason: 'The JWT role is not allowed to perform this operation.'});
      assert.match(r.headers.get('content-type'), /^application\/json/);
    }
    const none = await srv.request('POST', 'broadcast', {body: {event: 'x'}});
    assert.equal(none.status, 401);
  });

  it('refuses bad bodies with a JSON reason and delivers nothing', async () => {
    const viewer = t.as('viewer', {channel: 'bad1', user: 'w1'});
    const sse = await sseStream(srv, viewer);
    const bad = [
      [{rawBody: '{"event": '}, 400],
      [{rawBody: ''}, 400],
      [{body: [1, 2]}, 400],
      [{body: {event: 12}}, 400],
      [{body: {event: 'a\u0001b'}}, 400],
      [{body: {target: 'all'}}, 400],
      [{body: {target: 'whisper-'}}, 400],
      [{body: {event: 'x', user_id: 'someone-else'}}, 403],
      [{body: {event: 'big', data: {blob: crypto.randomBytes(90 * 1024).toString('base64')}}}, 400],
    ];
    for (const [opts, status] of bad) {
      const tok = t.as('broadcaster', {channel: 'bad1', user: crypto.randomUUID().slice(0, 8)});
      const r = await srv.request('POST', 'broadcast', {token: tok, ...opts});
      assert.equal(r.status, status, `${JSON.stringify(opts).slice(0, 80)}: ${r.text}`);
      assert.equal(typeof r.json.reason, 'string');
    }
    const big = await srv.request('POST', 'broadcast', {
      token: t.as('broadcaster', {channel: 'bad1', user: 'bb'}),
      body: {event: 'big', data: {blob: crypto.randomBytes(90 * 1024).toString('base64')}}});
    assert.equal(big.json.reason, 'message too large');
    const backendNoChannel = await srv.request('POST', 'broadcast', {
      token: t.as('backend', {channel: '', user: 'be1'}), body: {event: 'x'}});
    assert.deepEqual([backendNoChannel.status, backendNoChannel.json.reason], [400, 'channel required']);
    const whisperGlobal = await srv.request('POST', 'extension_broadcast', {
      token: t.as('admin', {channel: 'bad1', user: 'ad1'}), body: {target: 'whisper-U1'}});
    assert.equal(whisperGlobal.status, 400);
    // A good message after all that: it is the only one the stream saw.
    await srv.request('POST', 'broadcast', {token: t.as('broadcaster', {channel: 'bad1', user: 'ok'}),
                                            body: {event: 'fine', data: 1}});
    await waitFor('the good message', () => sse.records.length === 1);
    await sleep(200);
    assert.deepEqual(sse.records.map((r) => r.data), [{event: `sandbox:${CLIENT_ID}:fine`, data: 1}]);
    sse.close();
  });

  it('limits a flood of broadcasts from one caller (429) without affecting others', async () => {
    const flooder = t.as('broadcaster', {channel: 'flood', user: 'flood'});
    const statuses = [];
    for (let i = 0; i < 20; i++) {
      const r = await srv.request('POST', 'broadcast', {token: flooder, body: {event: 'f', data: i}});
      statuses.push(r.status);
      if (r.status === 429) {
        assert.equal(r.json.reason, 'Too many messages');
        assert.match(r.json.info, /^retry in \d+ s$/);
      }
    }
    assert.deepEqual(statuses.filter((s) => s === 200).length, 5, statuses.join(','));
    assert.deepEqual(statuses.filter((s) => s === 429).length, 15);
    const other = t.as('broadcaster', {channel: 'flood2', user: 'flood2'});
    const r = await srv.request('POST', 'broadcast', {token: other, body: {event: 'f'}});
    assert.equal(r.status, 200);
  });
});

describe('native viewer stream', () => {
  let srv;
  let t;
  before(async () => {
    srv = await startServer({stage: 'sandbox', config: {
      messaging: {rate_burst: 100000, rate_per_minute: 6000000, socket_queue_bytes: 65536,
                  ping_seconds: 1}}});
    t = tokenFactory(srv);
  });
  after(async () => { await srv.stop(); srv.cleanup(); });

  it('refuses a missing or invalid token with a JSON error and upgrades nothing', async () => {
    const cases = [
      ['/v1/e/events', 401],
      [`/v1/e/events?client_id=${CLIENT_ID}&token=not.a.jwt`, 401],
      [`/v1/e/events?client_id=${CLIENT_ID}&token=${t.as('viewer', {channel: 'c', user: 'u', ttl: -600})}`, 401],
    ];
    for (const [p, status] of cases) {
      const r = await srv.request('GET', p);
      assert.equal(r.status, status, p);
      assert.equal(typeof r.json.reason, 'string');
      // The same refusal for a WebSocket upgrade.
      const ws = new WebSocket(`ws://127.0.0.1:${srv.port}${p}`);
      const outcome = await new Promise((resolve) => {
        ws.onopen = () => resolve('open');
        ws.onerror = () => resolve('error');
      });
      assert.equal(outcome, 'error', p);
    }
    const forged = tokenFactory(srv, {secret: randomSecret(), stage: 'sandbox'}).as('viewer', {channel: 'c', user: 'u'});
    const r = await srv.request('GET', `/v1/e/events?client_id=${CLIENT_ID}&token=${forged}`);
    assert.equal(r.status, 401);
    // The Authorization header works too.
    const ok = await fetch(`${srv.base}/v1/e/events`, {headers: {Authorization: `${CLIENT_ID} ${t.as('viewer', {channel: 'c', user: 'u'})}`}});
    assert.equal(ok.status, 200);
    await ok.body.cancel();
  });

  it('delivers the channel, the extension and the viewer\'s own whispers, in order', async () => {
    const a = await nativeSocket(srv, t.as('viewer', {channel: 'n1', user: 'a'}));
    const b = await nativeSocket(srv, t.as('viewer', {channel: 'n1', user: 'b'}));
    const other = await nativeSocket(srv, t.as('viewer', {channel: 'n2', user: 'c'}));
    const sse = await sseStream(srv, t.as('viewer', {channel: 'n1', user: 'd'}));
    const bc = t.as('broadcaster', {channel: 'n1'});
    const admin = t.as('admin', {channel: 'n1', user: 'adm'});
    const N = 200;
    for (let i = 0; i < N; i++) {
      await srv.request('POST', 'broadcast', {token: bc, body: {event: 'seq', data: {i}}});
    }
    await srv.request('POST', 'broadcast', {token: bc, body: {event: 'psst', target: 'whisper-Ua', data: {to: 'a'}}});
    await srv.request('POST', 'extension_broadcast', {token: admin, body: {event: 'all', data: {}}});
    await srv.request('POST', 'channel_state', {token: bc, body: {round: 9}});
    const prefix = `sandbox:${CLIENT_ID}:`;
    await waitFor('every message', () => a.messages.length === N + 3 && b.messages.length === N + 2 &&
                  sse.records.length === N + 2 && other.messages.length === 1);
    const seq = (list) => list.filter((m) => m.event === prefix + 'seq').map((m) => m.data.i);
    const expected = [...Array(N).keys()];
    assert.deepEqual(seq(a.messages), expected);
    assert.deepEqual(seq(b.messages), expected);
    assert.deepEqual(seq(sse.records.map((r) => r.data)), expected);
    assert.deepEqual(a.events().slice(N), [prefix + 'psst', prefix + 'all', prefix + 'channel_state_update']);
    assert.deepEqual(b.events().slice(N), [prefix + 'all', prefix + 'channel_state_update']);
    assert.deepEqual(a.messages[N + 2].data, {round: 9});
    assert.deepEqual(other.events(), [prefix + 'all']);
    // SSE ids follow publication order.
    const ids = sse.records.map((r) => r.id);
    assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
    for (const s of [a, b, other]) s.ws.close();
    sse.close();
  });

  it('disconnects a reader that stops reading, without growing memory', async () => {
    const healthy = await nativeSocket(srv, t.as('viewer', {channel: 'slow', user: 'ok'}));
    // A raw client that upgrades and then never reads.
    const token = t.as('viewer', {channel: 'slow', user: 'stuck'});
    const sock = net.connect(srv.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write(`GET /v1/e/events?client_id=${CLIENT_ID}&token=${token} HTTP/1.1\r\nHost: x\r\n` +
               'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
               `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n\r\n`);
    const head = await new Promise((r) => sock.once('data', (d) => r(d.toString())));
    assert.match(head, /^HTTP\/1\.1 101 /);
    sock.pause();
    sock.on('error', () => {});

    const before = rssKb(srv.child.pid);
    const bc = t.as('broadcaster', {channel: 'slow'});
    const blob = crypto.randomBytes(24 * 1024).toString('base64');  // 32 KiB a message
    let sent = 0;
    while (sent < 2000) {
      await srv.request('POST', 'broadcast', {token: bc, body: {event: 'bulk', data: {blob, n: sent}}});
      sent++;
      // The healthy reader keeps up (on a loaded machine it is slow too: wait for it), so
      // only the stuck one can fall queue_bytes behind.
      await waitFor('the healthy reader to catch up', () => healthy.messages.length >= sent, 20000);
      if (sent % 25 === 0 && (await metric(srv, 'medkit_viewer_disconnects_total{reason="slow"}')) >= 1) break;
    }
    assert.equal(await metric(srv, 'medkit_viewer_disconnects_total{reason="slow"}'), 1, `after ${sent} messages`);
    const grown = rssKb(srv.child.pid) - before;
    assert.ok(grown < MEMORY_GROWTH_BOUND_KB, `server memory grew by ${grown} KiB`);
    // The server dropped it (the gauge counts only the healthy reader now), and the client,
    // once it reads again, finds what the kernel had buffered and then the end.
    assert.equal(await metric(srv, 'medkit_viewer_sockets{kind="websocket"}'), 1);
    let drained = 0;
    sock.on('data', (d) => { drained += d.length; });
    sock.resume();
    await waitFor('the stuck socket to be drained', () => drained > 0);
    sock.destroy();
    // The reader that kept up got every message, in order.
    await waitFor('the healthy reader', () => healthy.messages.length === sent);
    assert.deepEqual(healthy.messages.map((m) => m.data.n), [...Array(sent).keys()]);
    healthy.ws.close();
  });

  it('answers pings, and closes on protocol violations', async () => {
    const token = t.as('viewer', {channel: 'p', user: 'p'});
    const sock = net.connect(srv.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write(`GET /v1/e/events?client_id=${CLIENT_ID}&token=${token} HTTP/1.1\r\nHost: x\r\n` +
               'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
               'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    let data = Buffer.alloc(0);
    sock.on('data', (d) => { data = Buffer.concat([data, d]); });
    await waitFor('the handshake', () => data.includes('\r\n\r\n'));
    const headEnd = data.indexOf('\r\n\r\n') + 4;
    const head = data.subarray(0, headEnd).toString();
    assert.match(head, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/);  // RFC 6455 sample
    data = data.subarray(headEnd);
    // A masked ping "hi" gets a pong "hi".
    const mask = Buffer.from([1, 2, 3, 4]);
    const hi = Buffer.from('hi').map((c, i) => c ^ mask[i % 4]);
    sock.write(Buffer.concat([Buffer.from([0x89, 0x82]), mask, hi]));
    await waitFor('the pong', () => data.includes(Buffer.from([0x8a, 0x02, 0x68, 0x69])));
    // A quiet socket gets the server's own ping (ping_seconds: 1 here).
    await waitFor('a server ping', () => data.includes(Buffer.from([0x89, 0x00])), 5000);
    // An unmasked frame is a protocol error: close 1002.
    let closed = false;
    sock.on('close', () => { closed = true; });
    sock.write(Buffer.from([0x81, 0x02, 0x68, 0x69]));
    await waitFor('the close', () => closed);
    const close = data.indexOf(Buffer.from([0x88]));
    assert.ok(close >= 0, 'a close frame');
    assert.equal(data.readUInt16BE(close + 2), 1002);
    assert.equal(await metric(srv, 'medkit_viewer_disconnects_total{reason="protocol"}'), 1);
  });

  it('refuses a bad WebSocket handshake with an HTTP error', async () => {
    const token = t.as('viewer', {channel: 'h', user: 'h'});
    const ask = async (headers) => {
      const sock = net.connect(srv.port, '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      sock.write(`GET /v1/e/events?client_id=${CLIENT_ID}&token=${token} HTTP/1.1\r\nHost: x\r\n` +
                 `Upgrade: websocket\r\nConnection: Upgrade\r\n${headers}\r\n`);
      let text = '';
      sock.on('data', (d) => { text += d.toString(); });
      await new Promise((r) => sock.once('close', r));
      return text;
    };
    assert.match(await ask('Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: abc\r\n'),
                 /^HTTP\/1\.1 426 [^]*Sec-WebSocket-Version: 13[^]*"reason":"unsupported WebSocket version"/);
    assert.match(await ask('Sec-WebSocket-Version: 13\r\n'), /^HTTP\/1\.1 400 [^]*missing Sec-WebSocket-Key/);
  });
});

describe('Pusher-protocol socket', () => {
  let srv;
  let t;
  before(async () => {
    srv = await startServer({stage: 'sandbox'});
    t = tokenFactory(srv);
  });
  after(async () => { await srv.stop(); srv.cleanup(); });

  async function pusher() {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/app/18c26c0d1c7fafb78ba2?protocol=7&client=js`);
    const frames = [];
    ws.onmessage = (e) => frames.push(JSON.parse(e.data));
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    await waitFor('connection_established', () => frames.length === 1);
    return {ws, frames};
  }

  it('greets, subscribes, answers pusher:ping, refuses private channels and client events', async () => {
    const {ws, frames} = await pusher();
    assert.equal(frames[0].event, 'pusher:connection_established');
    const established = JSON.parse(frames[0].data);
    assert.match(established.socket_id, /^\d+\.\d+$/);
    assert.equal(established.activity_timeout, 120);
    ws.send(JSON.stringify({event: 'pusher:ping', data: {}}));
    ws.send(JSON.stringify({event: 'pusher:subscribe', data: {auth: '', channel: 'private-x'}}));
    ws.send(JSON.stringify({event: 'pusher:subscribe', data: JSON.stringify({channel: `twitch.pubsub.${CLIENT_ID}.all`})}));
    ws.send(JSON.stringify({event: 'client-hello', channel: 'x', data: {}}));
    ws.send('not json');
    await waitFor('five answers', () => frames.length === 6);
    assert.deepEqual(frames.slice(1).map((f) => f.event),
                     ['pusher:pong', 'pusher:subscription_error', 'pusher_internal:subscription_succeeded',
                      'pusher:error', 'pusher:error']);
    assert.equal(frames[3].channel, `twitch.pubsub.${CLIENT_ID}.all`);
    // Extension-wide messages arrive on .all as "broadcast".
    await srv.request('POST', 'extension_broadcast', {token: t.as('admin', {channel: 'x', user: 'a'}),
                                                      body: {event: 'hey', data: {}}});
    await waitFor('the global message', () => frames.length === 7);
    assert.equal(frames[6].event, 'broadcast');
    assert.deepEqual(JSON.parse(JSON.parse(frames[6].data).message), {event: `sandbox:${CLIENT_ID}:hey`, data: {}});
    // Unsubscribed: nothing more.
    ws.send(JSON.stringify({event: 'pusher:unsubscribe', data: {channel: `twitch.pubsub.${CLIENT_ID}.all`}}));
    await sleep(100);
    await srv.request('POST', 'extension_broadcast', {token: t.as('admin', {channel: 'x', user: 'a'}),
                                                      body: {event: 'hey', data: {}}});
    await sleep(300);
    assert.equal(frames.length, 7);
    ws.close();
  });

  it('closes every socket with 1001 on shutdown, and the server exits 0', async () => {
    const s2 = await startServer({stage: 'sandbox'});
    const ws = new WebSocket(`ws://127.0.0.1:${s2.port}/app/k?protocol=7`);
    const closed = new Promise((resolve) => { ws.onclose = (e) => resolve(e.code); });
    await new Promise((resolve) => { ws.onopen = resolve; });
    const exit = await s2.stop();
    assert.equal(await closed, 1001);
    assert.deepEqual(exit, {code: 0, signal: null});
    s2.cleanup();
  });
});

describe('production stage', () => {
  it('serves no Pusher socket by default, keeps the native stream, refuses pusher_broadcast', async () => {
    const secret = randomSecret();
    const srv = await startServer({stage: 'production', config: prodConfig(secret, randomSecret())});
    try {
      const p = tokenFactory(srv, {secret});
      p.clientId = PROD_CLIENT;
      const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/app/k?protocol=7`);
      const outcome = await new Promise((resolve) => {
        ws.onopen = () => resolve('open');
        ws.onerror = () => resolve('error');
      });
      assert.equal(outcome, 'error');
      const viewer = p.as('viewer', {channel: 'pc', user: 'v', clientId: PROD_CLIENT});
      const stream = await nativeSocket(srv, viewer, PROD_CLIENT);
      const owner = p.as('broadcaster', {channel: PROD_OWNER, clientId: PROD_CLIENT});
      const admin = p.as('admin', {channel: 'pc', user: 'adm', clientId: PROD_CLIENT});
      let r = await p.req('POST', 'pusher_broadcast', admin, {body: {event: 'production:x:y'}});
      assert.equal(r.status, 404);
      r = await p.req('POST', 'extension_broadcast', owner, {body: {event: 'owned'}});
      assert.equal(r.status, 200, r.text);
      await waitFor('the owner broadcast', () => stream.messages.length === 1);
      assert.equal(stream.messages[0].event, `production:${PROD_CLIENT}:owned`);
      stream.ws.close();
    } finally {
      await srv.stop();
      srv.cleanup();
    }
  });
});
