// The Twitch Extension PubSub transport (spec 6.3), against a fake Helix endpoint on loopback:
// what REST broadcasts, extension broadcasts, whispers and state writes post to
// /extensions/pubsub (headers, JWT claims verified with the extension secret, body, message
// envelope), fragmentation of large messages, coalescing of state updates, the per-channel rate
// limit, retries on 429/5xx, drops on other 4xx, what is skipped, metrics, clean shutdown, and
// that the transport is off unless configured. Only 127.0.0.1 is ever contacted.
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import zlib from 'node:zlib';
import {spawnSync, execFileSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {startServer, signJwt, BIN} from './lib/server.mjs';

const HS256 = {alg: 'HS256', typ: 'JWT'};
const EXT = 'twitchext';
const OWNER = 'owner42';
const secretBytes = crypto.randomBytes(32);
const SECRET = secretBytes.toString('base64');
const now = () => Math.floor(Date.now() / 1000);
const sign = (claims) => signJwt(HS256, {exp: now() + 3600, ...claims}, secretBytes);
const backend = () => sign({role: 'backend', channel_id: 'any', user_id: OWNER});
const broadcaster = (channel) => sign({role: 'broadcaster', channel_id: channel, user_id: channel});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls cond() until it returns a truthy value (returned) or the timeout passes (throws).
async function waitFor(cond, what, timeout = 30000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

// A fake Helix endpoint: records every request; answers what respond(record) returns
// ({status, headers}, default 204), or never answers when it returns 'hang'.
// closeIdleAfterMs: close each connection that long after a response, as a server ending
// idle keep-alive connections does. tls: {key, cert} serves https.
async function fakeTwitch(respond = () => ({status: 204}), {closeIdleAfterMs, tls} = {}) {
  const requests = [];
  const hanging = [];
  const tlsErrors = [];
  const handler = (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      let json;
      try { json = JSON.parse(body); } catch { json = undefined; }
      const record = {method: req.method, url: req.url, headers: req.headers, body, json, at: Date.now(),
                      socket: req.socket.remotePort, servername: req.socket.servername};
      record.channel = json && (json.broadcaster_id || (json.is_global_broadcast ? '*global*' : undefined));
      requests.push(record);
      const r = respond(record, requests);
      if (r === 'hang') { hanging.push(res); return; }
      record.status = r.status;
      res.writeHead(r.status, r.headers || {});
      res.end(r.body || '');
      if (closeIdleAfterMs !== undefined) {
        const socket = req.socket;
        res.on('finish', () => setTimeout(() => socket.destroy(), closeIdleAfterMs));
      }
    });
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  server.on('tlsClientError', (e) => tlsErrors.push(e.message));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const {port} = server.address();
  return {
    requests, port, tlsErrors, base: `${tls ? 'https' : 'http'}://127.0.0.1:${port}/helix`,
    forChannel: (ch) => requests.filter((r) => r.channel === ch),
    close: () => new Promise((resolve) => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}

// The envelope a set of transported strings decode to (spec 6.2).
function decodeParts(parts) {
  if (parts.length === 1 && (parts[0][0] === '{' || parts[0][0] === '[')) return JSON.parse(parts[0]);
  let b64 = '';
  if (parts[0][0] === '<') {
    const n = Number(parts[0].match(/^<(\d+),(\d+)>/)[2]);
    assert.equal(parts.length, n, 'every fragment');
    parts.forEach((p, i) => {
      const m = p.match(/^<(\d+),(\d+)>/);
      assert.ok(m, `fragment header of ${p.slice(0, 20)}`);
      assert.deepEqual([Number(m[1]), Number(m[2])], [i, n], 'fragments in order');
      b64 += p.slice(m[0].length);
    });
  } else {
    assert.equal(parts.length, 1);
    b64 = parts[0];
  }
  return JSON.parse(zlib.inflateSync(Buffer.from(b64, 'base64')).toString('utf8'));
}

// Parses a Bearer JWT and checks its HS256 signature with the extension secret.
function verifyBearer(authorization) {
  const m = /^Bearer (([^.]+)\.([^.]+))\.([^.]+)$/.exec(authorization || '');
  assert.ok(m, `Authorization: Bearer <jwt>, got ${authorization}`);
  const expected = crypto.createHmac('sha256', secretBytes).update(m[1]).digest('base64url');
  assert.equal(m[4], expected, 'JWT signed with the extension secret');
  assert.deepEqual(JSON.parse(Buffer.from(m[2], 'base64url')), {alg: 'HS256', typ: 'JWT'});
  return JSON.parse(Buffer.from(m[3], 'base64url'));
}

function checkClaims(claims, channelId, send) {
  assert.equal(claims.role, 'external');
  assert.equal(claims.user_id, OWNER);
  assert.equal(claims.channel_id, channelId);
  assert.deepEqual(claims.pubsub_perms, {send: [send]});
  assert.ok(claims.exp >= now() + 30 && claims.exp <= now() + 120, `exp ${claims.exp}`);
}

function decoded(record) { return decodeParts([record.json.message]); }

// The message requests (first seen) whose envelope's event is `name`.
function withEvent(requests, name) {
  return requests.filter((r) => r.json && r.json.message && r.json.message[0] === '{' &&
                                decoded(r).event === `production:${EXT}:${name}`);
}

async function metric(srv, line) {
  const r = await srv.request('GET', '/metrics');
  assert.equal(r.status, 200);
  const m = r.text.split('\n').find((l) => l.startsWith(line + ' '));
  return m === undefined ? undefined : Number(m.slice(line.length + 1));
}
const messages = (result) => `medkit_twitch_pubsub_messages_total{result="${result}"}`;
const posts = (result) => `medkit_twitch_pubsub_posts_total{result="${result}"}`;

// Stops a server and checks it exited cleanly (SIGTERM: exit code 0, no crash, no sanitizer
// report).
async function stopClean(srv) {
  const exit = await srv.stop();
  srv.cleanup();
  assert.deepEqual(exit, {code: 0, signal: null}, 'clean exit\n' + srv.output());
}

function extensions(extra = []) {
  return [{client_id: EXT, secret: SECRET, owner_id: OWNER}, ...extra];
}

describe('twitch pubsub: what is posted', () => {
  let twitch, srv;
  before(async () => {
    twitch = await fakeTwitch();
    srv = await startServer({
      stage: 'production', store: 'memory',
      config: {
        extensions: extensions([{client_id: 'noowner', secret: SECRET}]),
        messaging: {rate_burst: 1000, rate_per_minute: 60000, vote_update_interval_ms: 300},
        twitch: {pubsub: true, api_base: twitch.base, rate_per_minute: 6000, burst: 100},
      },
    });
  });
  after(async () => {
    if (srv) await stopClean(srv);
    if (twitch) await twitch.close();
  });

  it('POST broadcast arrives as a Helix extension PubSub message for the channel', async () => {
    const r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
      body: {target: 'broadcast', event: 'hello', user_id: 'chan1', data: {n: 1, s: 'héllo "x"'}}});
    assert.equal(r.status, 200, r.text);
    const [req] = await waitFor(() => { const m = withEvent(twitch.requests, 'hello'); return m.length ? m : null; }, 'hello');
    assert.equal(req.method, 'POST');
    assert.equal(req.url, '/helix/extensions/pubsub');
    assert.equal(req.headers['client-id'], EXT);
    assert.equal(req.headers['content-type'], 'application/json');
    checkClaims(verifyBearer(req.headers.authorization), 'chan1', 'broadcast');
    assert.deepEqual(Object.keys(req.json), ['target', 'broadcaster_id', 'is_global_broadcast', 'message']);
    assert.deepEqual(req.json.target, ['broadcast']);
    assert.equal(req.json.broadcaster_id, 'chan1');
    assert.equal(req.json.is_global_broadcast, false);
    assert.equal(typeof req.json.message, 'string');
    assert.deepEqual(JSON.parse(req.json.message), {event: `production:${EXT}:hello`, data: {n: 1, s: 'héllo "x"'}});
    assert.equal(withEvent(twitch.requests, 'hello').length, 1, 'posted once');
  });

  it('POST extension_broadcast arrives as a global message', async () => {
    const r = await srv.request('POST', 'extension_broadcast', {token: backend(), clientId: EXT,
      body: {event: 'everyone', data: {g: true}}});
    assert.equal(r.status, 200, r.text);
    const [req] = await waitFor(() => { const m = withEvent(twitch.requests, 'everyone'); return m.length ? m : null; }, 'global');
    checkClaims(verifyBearer(req.headers.authorization), 'all', 'global');
    assert.deepEqual(req.json, {target: ['global'], is_global_broadcast: true,
                                message: JSON.stringify({event: `production:${EXT}:everyone`, data: {g: true}})});
    assert.equal(req.headers['client-id'], EXT);
  });

  it('a whisper targets whisper-<id> on the channel, with matching permissions', async () => {
    let r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
      body: {target: 'whisper-Uabc', event: 'psst', user_id: 'chan2', data: {w: 1}}});
    assert.equal(r.status, 200, r.text);
    const viewer = sign({role: 'viewer', channel_id: 'chan3', opaque_user_id: 'Uself', user_id: 'self'});
    r = await srv.request('POST', 'whisper_self', {token: viewer, clientId: EXT, body: {event: 'mine', data: {me: 1}}});
    assert.equal(r.status, 200, r.text);
    const [w] = await waitFor(() => { const m = withEvent(twitch.requests, 'psst'); return m.length ? m : null; }, 'whisper');
    assert.deepEqual(w.json.target, ['whisper-Uabc']);
    assert.equal(w.json.broadcaster_id, 'chan2');
    assert.equal(w.json.is_global_broadcast, false);
    assert.deepEqual(JSON.parse(w.json.message).data, {w: 1});
    checkClaims(verifyBearer(w.headers.authorization), 'chan2', 'whisper-Uabc');
    const [s] = await waitFor(() => { const m = withEvent(twitch.requests, 'mine'); return m.length ? m : null; }, 'whisper_self');
    assert.deepEqual(s.json.target, ['whisper-Uself']);
    assert.equal(s.json.broadcaster_id, 'chan3');
    checkClaims(verifyBearer(s.headers.authorization), 'chan3', 'whisper-Uself');
  });

  it('20 KiB of incompressible data arrives as ordered <i,n> fragments of at most 5000 chars', async () => {
    const blob = crypto.randomBytes(15 * 1024).toString('base64');  // 20 KiB of text
    const r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
      body: {event: 'big', user_id: 'fragch', data: {blob}}});
    assert.equal(r.status, 200, r.text);
    const first = await waitFor(() => twitch.forChannel('fragch')[0], 'first fragment');
    const n = Number(/^<0,(\d+)>/.exec(first.json.message)?.[1]);
    assert.ok(n >= 4, `fragment count ${n} (${first.json.message.slice(0, 12)})`);
    const frags = await waitFor(() => { const f = twitch.forChannel('fragch'); return f.length >= n ? f : null; }, `${n} fragments`);
    assert.equal(frags.length, n);
    for (const f of frags) {
      assert.ok(f.json.message.length <= 5000, `fragment of ${f.json.message.length} chars`);
      assert.deepEqual(f.json.target, ['broadcast']);
      checkClaims(verifyBearer(f.headers.authorization), 'fragch', 'broadcast');
    }
    assert.deepEqual(decodeParts(frags.map((f) => f.json.message)),
                     {event: `production:${EXT}:big`, data: {blob}});
  });

  it('server events: vote_update (the final statistics last) and json_store_update', async () => {
    for (let i = 0; i < 5; i++) {
      const viewer = sign({role: 'viewer', channel_id: 'votech', opaque_user_id: `Uv${i}`, user_id: `v${i}`});
      const r = await srv.request('POST', 'vote?id=fav', {token: viewer, clientId: EXT, body: {value: i}});
      assert.equal(r.status, 200, r.text);
    }
    const updates = () => withEvent(twitch.requests, 'vote_update:fav');
    await waitFor(() => { const u = updates(); return u.length && decoded(u[u.length - 1]).data.stats.count === 5; },
                  'the final vote_update');
    await sleep(800);  // past the throttle window: nothing newer may follow
    const u = updates();
    const last = decoded(u[u.length - 1]).data;
    assert.equal(last.id, 'fav');
    assert.equal(last.stats.count, 5);
    assert.equal(last.stats.sum, 10);
    const counts = u.map((q) => decoded(q).data.stats.count);
    assert.deepEqual(counts, [...counts].sort((a, b) => a - b), `updates in order: ${counts}`);
    for (const q of u) assert.equal(q.json.broadcaster_id, 'votech');
    const r = await srv.request('POST', 'json_store?id=board', {token: broadcaster('storech'), clientId: EXT,
      body: {leader: 'red', score: 12}});
    assert.equal(r.status, 200, r.text);
    const [j] = await waitFor(() => { const m = withEvent(twitch.requests, 'json_store_update:board'); return m.length ? m : null; },
                              'json_store_update');
    assert.equal(j.json.broadcaster_id, 'storech');
    assert.deepEqual(decoded(j).data, {id: 'board', value: {leader: 'red', score: 12}});
  });

  it('messages of an extension without owner_id are skipped and counted', async () => {
    const before = twitch.requests.length;
    const tok = signJwt(HS256, {exp: now() + 3600, role: 'backend', channel_id: 'x', user_id: 'u'}, secretBytes);
    const r = await srv.request('POST', 'broadcast', {token: tok, clientId: 'noowner',
      body: {event: 'nope', user_id: 'skipch', data: {}}});
    assert.equal(r.status, 200, r.text);
    await waitFor(async () => (await metric(srv, messages('skipped'))) === 1, 'skipped = 1');
    // Something posted after it proves the transport got past it.
    await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT, body: {event: 'after_skip', user_id: 'skipch', data: {}}});
    await waitFor(() => withEvent(twitch.requests, 'after_skip').length === 1, 'after_skip');
    assert.equal(twitch.requests.slice(before).filter((q) => q.headers['client-id'] === 'noowner').length, 0);
    assert.equal(twitch.forChannel('skipch').length, 1);
  });

  it('/metrics counts what was sent', async () => {
    const sent = await metric(srv, messages('sent'));
    const ok = await metric(srv, posts('ok'));
    assert.equal(ok, twitch.requests.length, 'one ok POST per request the fake received');
    assert.ok(sent >= 8 && sent < ok, `sent ${sent}, posts ${ok} (fragments are several posts)`);
    assert.equal(await metric(srv, posts('failed')), 0);
    assert.equal(await metric(srv, messages('dropped_failed')), 0);
    assert.equal(await metric(srv, 'medkit_twitch_pubsub_queued'), 0);
  });

  it('requests share a few keep-alive connections', () => {
    const sockets = new Set(twitch.requests.map((r) => r.socket));
    assert.ok(sockets.size <= 4, `${sockets.size} connections (pool of 4)`);
    assert.ok(sockets.size < twitch.requests.length, `${sockets.size} connections for ${twitch.requests.length} requests`);
  });
});

describe('twitch pubsub: keep-alive connections closed by Twitch', () => {
  let twitch, srv;
  before(async () => {
    twitch = await fakeTwitch(undefined, {closeIdleAfterMs: 200});
    srv = await startServer({
      stage: 'production', store: 'memory',
      config: {extensions: extensions(), twitch: {pubsub: true, api_base: twitch.base, connections: 1}},
    });
  });
  after(async () => {
    if (srv) await stopClean(srv);
    if (twitch) await twitch.close();
  });

  it('a connection the server closed while idle is replaced without a failed post', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
        body: {event: 'idle', user_id: 'kach', data: {i}}});
      assert.equal(r.status, 200, r.text);
      await waitFor(() => twitch.forChannel('kach').length === i + 1, `message ${i}`);
      await sleep(600);  // the fake closes idle connections after 200 ms
    }
    assert.equal(new Set(twitch.forChannel('kach').map((r) => r.socket)).size, 3, 'a new connection each time: ' + JSON.stringify(twitch.forChannel('kach').map((r) => r.socket)));
    assert.equal(await metric(srv, posts('failed')), 0);
    assert.equal(await metric(srv, posts('ok')), 3);
  });
});

describe('twitch pubsub: rate limit and coalescing', () => {
  let twitch, srv;
  before(async () => {
    twitch = await fakeTwitch();
    srv = await startServer({
      stage: 'production', store: 'memory',
      config: {
        extensions: extensions(),
        messaging: {rate_burst: 1000, rate_per_minute: 60000},
        twitch: {pubsub: true, api_base: twitch.base, rate_per_minute: 60, burst: 3},
      },
    });
  });
  after(async () => {
    if (srv) await stopClean(srv);
    if (twitch) await twitch.close();
  });

  it('a burst of 30 channel_state writes posts fewer messages, the last one the final state', async () => {
    const tok = broadcaster('statech');
    for (let i = 0; i < 30; i++) {
      const r = await srv.request('POST', 'channel_state', {token: tok, clientId: EXT, body: {n: i, pad: 'x'.repeat(i)}});
      assert.equal(r.status, 200, r.text);
    }
    await waitFor(() => {
      const got = twitch.forChannel('statech');
      return got.length > 0 && decoded(got[got.length - 1]).data.n === 29;
    }, 'the final state');
    await sleep(2500);  // anything still queued would go out within 2 s at 1 a second
    const got = twitch.forChannel('statech');
    const states = got.map((r) => decoded(r));
    for (const s of states) assert.equal(s.event, `production:${EXT}:channel_state_update`);
    assert.ok(got.length < 30, `${got.length} posts for 30 writes`);
    assert.deepEqual(states[states.length - 1].data, {n: 29, pad: 'x'.repeat(29)});
    const ns = states.map((s) => s.data.n);
    assert.deepEqual(ns, [...ns].sort((a, b) => a - b), 'states in write order');
    assert.equal(new Set(ns).size, ns.length, 'no state twice');
    // Every write was either posted or superseded by a newer one.
    assert.equal(await metric(srv, messages('coalesced')), 30 - got.length);
    assert.equal(await metric(srv, messages('sent')), got.length);
  });

  it('the per-channel rate holds: burst 3, then 1 a second, all in order', async () => {
    const count = 7;
    for (let i = 0; i < count; i++) {
      const r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
        body: {event: 'tick', user_id: 'ratech', data: {i}}});
      assert.equal(r.status, 200, r.text);
    }
    const got = await waitFor(() => { const g = twitch.forChannel('ratech'); return g.length >= count ? g : null; },
                              `${count} messages`, 60000);
    assert.deepEqual(got.map((r) => decoded(r).data.i), [...Array(count).keys()], 'custom events in order, none lost');
    const t0 = got[0].at;
    const early = got.filter((r) => r.at - t0 < 500).length;
    assert.ok(early <= 3, `${early} posts within 500 ms of the first (burst 3)`);
    // After the burst, 1 a second: the 7th needs at least 4 more seconds (less the first
    // request's own latency, which a slow connect could add to t0).
    assert.ok(got[count - 1].at - t0 >= 4000 - 500, `spread over ${got[count - 1].at - t0} ms`);
    // Another channel has its own bucket: it is not held up by ratech's.
    const r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
      body: {event: 'other', user_id: 'otherch', data: {}}});
    assert.equal(r.status, 200);
    await waitFor(() => twitch.forChannel('otherch').length === 1, 'other channel');
  });
});

describe('twitch pubsub: retries and drops', () => {
  let twitch, srv;
  const plan = {};  // channel -> list of statuses to answer first (then 204)
  before(async () => {
    twitch = await fakeTwitch((record) => {
      const list = plan[record.channel];
      if (list && list.length) {
        const status = list.shift();
        if (status === 'hang') return 'hang';
        const headers = status === 429 ? {'Ratelimit-Reset': String(now() + 1), 'Ratelimit-Remaining': '0'} : {};
        return {status, headers, body: status === 204 ? '' : '{"error":"x"}'};
      }
      return {status: 204};
    });
    srv = await startServer({
      stage: 'production', store: 'memory',
      config: {
        extensions: extensions(),
        messaging: {rate_burst: 1000, rate_per_minute: 60000},
        twitch: {pubsub: true, api_base: twitch.base},
      },
    });
  });
  after(async () => {
    if (twitch) await twitch.close();
    if (srv) await stopClean(srv);
  });

  it('429 answers (with Ratelimit-Reset) are retried and the message arrives later', async () => {
    plan.ch429 = [429, 429, 429];
    const r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
      body: {event: 'later', user_id: 'ch429', data: {ok: 1}}});
    assert.equal(r.status, 200, r.text);
    const got = await waitFor(() => { const g = twitch.forChannel('ch429'); return g.length >= 4 ? g : null; }, '4 tries');
    assert.deepEqual(got.map((g) => g.status), [429, 429, 429, 204]);
    for (const g of got) assert.deepEqual(decoded(g), {event: `production:${EXT}:later`, data: {ok: 1}});
    // Each retry waited for the reset (the next whole second).
    for (let i = 1; i < got.length; i++) {
      assert.ok(got[i].at >= Math.floor(got[i - 1].at / 1000) * 1000 + 1000 - 50, `try ${i} waited for the reset`);
    }
    assert.equal(await metric(srv, posts('failed')), 3);
    assert.equal(await metric(srv, posts('retried')), 3);
  });

  it('5xx answers are retried with backoff', async () => {
    plan.ch5xx = [503, 500];
    const r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
      body: {event: 'eventually', user_id: 'ch5xx', data: {}}});
    assert.equal(r.status, 200, r.text);
    const got = await waitFor(() => { const g = twitch.forChannel('ch5xx'); return g.length >= 3 ? g : null; }, '3 tries');
    assert.deepEqual(got.map((g) => g.status), [503, 500, 204]);
    assert.ok(got[1].at - got[0].at >= 900, 'backed off about 1 s');
    assert.ok(got[2].at - got[1].at >= 1900, 'then about 2 s');
  });

  it('other 4xx answers are dropped after three tries; later messages still go', async () => {
    plan.ch400 = [400, 400, 400];
    let r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
      body: {event: 'refused', user_id: 'ch400', data: {}}});
    assert.equal(r.status, 200, r.text);
    r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
      body: {event: 'accepted', user_id: 'ch400', data: {}}});
    assert.equal(r.status, 200, r.text);
    const got = await waitFor(() => { const g = twitch.forChannel('ch400'); return g.length >= 4 ? g : null; }, '4 requests');
    assert.deepEqual(got.map((g) => [decoded(g).event.split(':')[2], g.status]),
                     [['refused', 400], ['refused', 400], ['refused', 400], ['accepted', 204]]);
    assert.equal(await metric(srv, messages('dropped_failed')), 1);
  });

  it('a request that never gets an answer does not stop a clean shutdown', async () => {
    plan.hangch = ['hang'];
    const r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
      body: {event: 'stuck', user_id: 'hangch', data: {}}});
    assert.equal(r.status, 200, r.text);
    await waitFor(() => twitch.forChannel('hangch').length === 1, 'the hanging request');
    assert.equal(await metric(srv, 'medkit_twitch_pubsub_in_flight'), 1);
    const exit = await srv.stop();
    assert.deepEqual(exit, {code: 0, signal: null}, srv.output());
  });
});

describe('twitch pubsub: configuration', () => {
  it('is off unless configured: no transport, no metrics', async () => {
    const srv = await startServer({stage: 'production', store: 'memory', config: {extensions: extensions()}});
    try {
      const r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
        body: {event: 'quiet', user_id: 'c', data: {}}});
      assert.equal(r.status, 200, r.text);
      const m = await srv.request('GET', '/metrics');
      assert.doesNotMatch(m.text, /medkit_twitch_pubsub/);
    } finally {
      await stopClean(srv);
    }
  });

  const bad = [
    [{pubsub: true, api_bse: 'http://127.0.0.1:1'}, /unknown twitch key "api_bse"/],
    [{pubsub: true, api_base: 'ftp://127.0.0.1:1'}, /twitch.api_base must start with http:\/\/ or https:\/\//],
    [{pubsub: 'yes'}, /pubsub must be true or false/],
    [{pubsub: true, api_base: 'http://127.0.0.1:1', burst: 0}, /twitch.burst must be at least 1/],
    [{pubsub: true, api_base: 'http://127.0.0.1:1', rate_per_minute: -1}, /rate_per_minute must be a non-negative integer/],
    [{pubsub: true, api_base: 'http://127.0.0.1:1/x?y=1'}, /must not have a query/],
    [[], /twitch must be an object/],
  ];
  for (const [twitch, message] of bad) {
    it(`refuses twitch: ${JSON.stringify(twitch)}`, () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medkit-twitch-'));
      try {
        const file = path.join(dir, 'c.json');
        fs.writeFileSync(file, JSON.stringify({extensions: extensions(), twitch}));
        const r = spawnSync(BIN, ['serve', '--port', '0', '--store', 'memory', '--stage', 'production',
                                  '--config', file], {encoding: 'utf8', timeout: 15000});
        assert.equal(r.status, 2, r.stdout + r.stderr);
        assert.match(r.stdout + r.stderr, message);
      } finally {
        fs.rmSync(dir, {recursive: true, force: true});
      }
    });
  }
});

describe('twitch pubsub over https (loopback certificates)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medkit-tls-'));
  // A self-signed certificate (its own CA) for the given subjectAltName.
  function makeCert(name, san) {
    const key = path.join(dir, `${name}.key`), cert = path.join(dir, `${name}.pem`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                             '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`,
                             '-addext', `subjectAltName=${san}`], {stdio: 'ignore'});
    return {keyFile: key, certFile: cert, key: fs.readFileSync(key), cert: fs.readFileSync(cert)};
  }
  const servers = [], fakes = [];
  let good, wrong;
  before(() => {
    good = makeCert('localhost', 'DNS:localhost,IP:127.0.0.1');
    wrong = makeCert('wrong.example', 'DNS:wrong.example');
  });
  after(async () => {
    for (const srv of servers) await stopClean(srv);
    for (const f of fakes) await f.close();
    fs.rmSync(dir, {recursive: true, force: true});
  });
  async function start(fake, twitch) {
    const srv = await startServer({stage: 'production', store: 'memory',
      config: {extensions: extensions(), twitch: {pubsub: true, ...twitch}}});
    servers.push(srv);
    const r = await srv.request('POST', 'broadcast', {token: backend(), clientId: EXT,
      body: {event: 'secure', user_id: 'tlsch', data: {tls: true}}});
    assert.equal(r.status, 200, r.text);
    return srv;
  }

  it('posts over TLS to a host whose certificate a configured CA signed, with SNI', async () => {
    const fake = await fakeTwitch(undefined, {tls: {key: good.key, cert: good.cert}});
    fakes.push(fake);
    const srv = await start(fake, {api_base: `https://localhost:${fake.port}/helix`, ca_file: good.certFile});
    const [req] = await waitFor(() => { const m = withEvent(fake.requests, 'secure'); return m.length ? m : null; }, 'https post');
    assert.equal(req.servername, 'localhost', 'SNI');
    assert.equal(req.url, '/helix/extensions/pubsub');
    checkClaims(verifyBearer(req.headers.authorization), 'tlsch', 'broadcast');
    assert.deepEqual(JSON.parse(req.json.message), {event: `production:${EXT}:secure`, data: {tls: true}});
    assert.equal(await metric(srv, posts('failed')), 0);
  });

  it('refuses a certificate the system CA store does not trust', async () => {
    const fake = await fakeTwitch(undefined, {tls: {key: good.key, cert: good.cert}});
    fakes.push(fake);
    const srv = await start(fake, {api_base: `https://127.0.0.1:${fake.port}/helix`});
    await waitFor(async () => (await metric(srv, posts('failed'))) >= 1, 'a failed post');
    assert.equal(fake.requests.length, 0, 'nothing sent over an unverified connection');
    assert.ok(fake.tlsErrors.length >= 1, 'the handshake was attempted and abandoned');
    assert.equal(await metric(srv, posts('ok')), 0);
  });

  it('refuses a trusted certificate that names another host', async () => {
    const fake = await fakeTwitch(undefined, {tls: {key: wrong.key, cert: wrong.cert}});
    fakes.push(fake);
    const srv = await start(fake, {api_base: `https://127.0.0.1:${fake.port}/helix`, ca_file: wrong.certFile});
    await waitFor(async () => (await metric(srv, posts('failed'))) >= 1, 'a failed post');
    assert.equal(fake.requests.length, 0, 'nothing sent to a host the certificate does not name');
    assert.equal(await metric(srv, posts('ok')), 0);
  });

  it('refuses a ca_file that cannot be read', () => {
    const file = path.join(dir, 'c.json');
    fs.writeFileSync(file, JSON.stringify({extensions: extensions(),
      twitch: {pubsub: true, api_base: 'https://127.0.0.1:1', ca_file: path.join(dir, 'missing.pem')}}));
    const r = spawnSync(BIN, ['serve', '--port', '0', '--store', 'memory', '--stage', 'production',
                              '--config', file], {encoding: 'utf8', timeout: 15000});
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /twitch\.ca_file/);
  });
});
