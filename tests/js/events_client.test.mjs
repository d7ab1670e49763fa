// Real-client viewer events: the official @muxy/extensions-js 2.4.18 bundle in jsdom windows,
// its bundled pusher-js connection sent to the server by docs/snippets/medkit-pusher-shim.js
// (as docs/api/events.md tells developers to). sdk.listen() must receive broadcasts, whispers
// (only the whispered viewer), extension-wide broadcasts, vote_update, json_store_update and
// channel_state_update; a 20 KiB message arrives compressed and fragmented and decodes to the
// original; events of one channel never reach another. A standalone pusher-js with wsHost /
// wsPort / forceTLS: false works too.
//
// Users (client id testclientid): v1, v2 viewers of channel 100; bc its broadcaster; v3 a
// viewer of channel 200.
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import {JSDOM} from 'jsdom';
import {WebSocket} from 'undici';
import {startServer, CLIENT_ID} from './lib/server.mjs';
import {openUser, closeAllUsers} from './lib/medkit_client.mjs';
import {sleep, waitFor} from './lib/streams.mjs';

const require = createRequire(import.meta.url);
let srv;
const U = {};
const inbox = {};  // `${user}:${event}` -> [data...]
let tokens = {};

const plain = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

// Records every delivery of `event` to `user` (optionally a whisper to whisperId).
function record(user, event, whisperId) {
  const key = `${user}:${event}${whisperId ? ':' + whisperId : ''}`;
  inbox[key] = [];
  const cb = (data) => inbox[key].push(plain(data));
  if (whisperId) U[user].sdk.listen(event, whisperId, cb);
  else U[user].sdk.listen(event, cb);
  return inbox[key];
}

async function post(endpoint, token, body) {
  const r = await srv.request('POST', endpoint, {token, body});
  assert.equal(r.status, 200, `${endpoint}: ${r.status} ${r.text}`);
  return r;
}

before(async () => {
  srv = await startServer({stage: 'sandbox', config: {
    messaging: {vote_update_interval_ms: 1000, rate_burst: 10000, rate_per_minute: 60000}}});
  const users = {
    v1: {role: 'viewer', channelID: '100', userID: '201'},
    v2: {role: 'viewer', channelID: '100', userID: '202'},
    bc: {role: 'broadcaster', channelID: '100', userID: '100'},
    v3: {role: 'viewer', channelID: '200', userID: '301'},
  };
  for (const [k, o] of Object.entries(users)) {
    U[k] = await openUser(srv.base, {clientID: CLIENT_ID, pusher: true, ...o});
  }
  tokens = {
    bc100: await srv.sandboxToken({role: 'broadcaster', channel_id: '100'}),
    bc200: await srv.sandboxToken({role: 'broadcaster', channel_id: '200'}),
    admin: await srv.sandboxToken({role: 'admin', channel_id: '100', user_id: '900'}),
  };
  // Wait until every window's Pusher subscription is live: probe until each has heard one.
  const probes = {};
  for (const k of Object.keys(users)) probes[k] = record(k, 'probe');
  const prober = setInterval(() => {
    srv.request('POST', 'broadcast', {token: tokens.bc100, body: {event: 'probe', data: {}}});
    srv.request('POST', 'broadcast', {token: tokens.bc200, body: {event: 'probe', data: {}}});
  }, 200);
  try {
    await waitFor('every window to hear a probe',
                  () => Object.values(probes).every((list) => list.length > 0), 15000);
  } finally {
    clearInterval(prober);
  }
  await sleep(300);  // let the last probes land before the tests start counting
});

after(async () => {
  closeAllUsers();
  if (srv) {
    await srv.stop();
    srv.cleanup();
  }
});

describe('sdk.listen() through the Pusher-protocol socket', () => {
  it('receives a broadcast on its channel only', async () => {
    const a = record('v1', 'round_start');
    const b = record('v2', 'round_start');
    const c = record('v3', 'round_start');
    await post('broadcast', tokens.bc100, {target: 'broadcast', event: 'round_start',
                                           user_id: '100', data: {round: 7}});
    await waitFor('v1 and v2 to hear round_start', () => a.length === 1 && b.length === 1);
    assert.deepEqual(a, [{round: 7}]);
    assert.deepEqual(b, [{round: 7}]);
    // Channel 200 gets its own broadcast, and never channel 100's.
    await post('broadcast', tokens.bc200, {event: 'round_start', data: {round: 'c200'}});
    await waitFor('v3 to hear its own channel', () => c.length === 1);
    await sleep(300);
    assert.deepEqual(c, [{round: 'c200'}]);
    assert.deepEqual(a, [{round: 7}]);
  });

  it('delivers a whisper to the whispered viewer only', async () => {
    const id1 = U.v1.sdk.user.twitchOpaqueID;
    const id2 = U.v2.sdk.user.twitchOpaqueID;
    assert.equal(id1, 'U201');
    const w1 = record('v1', 'secret', id1);
    const w2 = record('v2', 'secret', id2);
    const broadcastListener = record('v2', 'secret');
    await post('broadcast', tokens.bc100, {target: `whisper-${id1}`, event: 'secret',
                                           data: {for: 'v1'}});
    await waitFor('v1 to hear its whisper', () => w1.length === 1);
    await sleep(300);
    assert.deepEqual(w1, [{for: 'v1'}]);
    assert.deepEqual(w2, []);
    assert.deepEqual(broadcastListener, []);
  });

  it('whisper_self reaches the caller on its own channel', async () => {
    const id2 = U.v2.sdk.user.twitchOpaqueID;
    const me = record('v2', 'sync', id2);
    const other = record('v1', 'sync', U.v1.sdk.user.twitchOpaqueID);
    await U.v2.sdk.signedRequest('POST', 'whisper_self', {event: 'sync', data: {tab: 2}});
    await waitFor('v2 to hear its whisper_self', () => me.length === 1);
    await sleep(200);
    assert.deepEqual(me, [{tab: 2}]);
    assert.deepEqual(other, []);
  });

  it('receives an extension-wide broadcast on every channel', async () => {
    const got = ['v1', 'v2', 'v3', 'bc'].map((u) => record(u, 'maintenance'));
    await post('extension_broadcast', tokens.admin, {event: 'maintenance', data: {in: 5}});
    await waitFor('every window to hear maintenance', () => got.every((l) => l.length === 1));
    for (const l of got) assert.deepEqual(l, [{in: 5}]);
  });

  it('receives vote_update with the poll statistics, the final one last', async () => {
    const updates = record('v2', 'vote_update:fav');
    const other = record('v3', 'vote_update:fav');
    await U.v1.sdk.vote('fav', 3);
    await waitFor('the first vote_update', () => updates.length >= 1);
    assert.equal(updates[0].id, 'fav');
    assert.equal(updates[0].stats.count, 1);
    assert.equal(updates[0].stats.sum, 3);
    assert.equal(updates[0].stats.specific[3], 1);
    // A burst inside the throttle window: the last update carries the final statistics.
    await U.v2.sdk.vote('fav', 5);
    await U.bc.sdk.vote('fav', 1);
    await waitFor('the trailing vote_update', () => updates.length >= 2 &&
                  updates[updates.length - 1].stats.count === 3);
    const last = updates[updates.length - 1];
    assert.equal(last.stats.sum, 9);
    assert.equal(last.stats.mean, 3);
    const server = plain(await U.v1.sdk.getVoteData('fav'));
    assert.equal(server.count, last.stats.count);
    assert.deepEqual(server.specific, last.stats.specific);
    assert.ok(updates.length <= 3, `throttled: ${updates.length} updates for 3 votes`);
    await sleep(200);
    assert.deepEqual(other, []);  // channel 200 has its own poll "fav"
  });

  it('receives json_store_update', async () => {
    const got = record('v1', 'json_store_update:board');
    await post('json_store?id=board', tokens.bc100, {leader: 'red', score: 12});
    await waitFor('json_store_update', () => got.length === 1);
    assert.deepEqual(got, [{id: 'board', value: {leader: 'red', score: 12}}]);
  });

  it('receives channel_state_update from the broadcaster\'s own writes', async () => {
    const got = record('v2', 'channel_state_update');
    const elsewhere = record('v3', 'channel_state_update');
    await U.bc.sdk.setChannelState({phase: 'vote', round: 2});
    await waitFor('channel_state_update', () => got.length === 1);
    assert.deepEqual(got, [{phase: 'vote', round: 2}]);
    await U.bc.sdk.client.patchChannelState(CLIENT_ID, [{op: 'replace', path: '/round', value: 3}]);
    await waitFor('the patched state', () => got.length === 2);
    assert.deepEqual(got[1], {phase: 'vote', round: 3});
    await sleep(200);
    assert.deepEqual(elsewhere, []);
  });

  it('decodes a 20 KiB message that arrived compressed and fragmented', async () => {
    // A raw Pusher subscriber beside the SDK sees the transported parts.
    const raw = new WebSocket(`ws://127.0.0.1:${srv.port}/app/anykey?protocol=7`);
    const frames = [];
    raw.onmessage = (e) => frames.push(JSON.parse(e.data));
    await new Promise((resolve, reject) => { raw.onopen = resolve; raw.onerror = reject; });
    raw.send(JSON.stringify({event: 'pusher:subscribe', data: {channel: `twitch.pubsub.${CLIENT_ID}.100`}}));
    await waitFor('the raw subscription', () => frames.some((f) => f.event === 'pusher_internal:subscription_succeeded'));

    const got = record('v1', 'big');
    const blob = crypto.randomBytes(15 * 1024).toString('base64');  // 20 KiB, incompressible
    assert.equal(blob.length, 20480);
    await post('broadcast', tokens.bc100, {event: 'big', data: {blob, n: 1}});
    await waitFor('the big message', () => got.length === 1);
    assert.deepEqual(got, [{blob, n: 1}]);

    await waitFor('the raw fragments', () => frames.filter((f) => f.event === 'broadcast').length >= 2);
    const parts = frames.filter((f) => f.event === 'broadcast').map((f) => JSON.parse(f.data).message);
    assert.ok(parts.length >= 5, `${parts.length} fragments`);
    parts.forEach((p, i) => {
      assert.ok(p.startsWith(`<${i},${parts.length}>`), p.slice(0, 12));
      assert.ok(p.length <= 5000, `fragment ${i} is ${p.length} bytes`);
    });
    const joined = parts.map((p) => p.slice(p.indexOf('>') + 1)).join('');
    const zlib = await import('node:zlib');
    const envelope = JSON.parse(zlib.inflateSync(Buffer.from(joined, 'base64')).toString());
    assert.deepEqual(envelope, {event: `sandbox:${CLIENT_ID}:big`, data: {blob, n: 1}});
    raw.close();
  });

  it('sdk.send() (pusher_broadcast) reaches the other windows', async () => {
    const got = record('v1', 'from_bc');
    await U.bc.sdk.send('from_bc', {hello: true});
    await waitFor('the sent event', () => got.length === 1);
    assert.deepEqual(got, [{hello: true}]);
  });

  it('never delivered channel 100 events to channel 200', () => {
    for (const [key, list] of Object.entries(inbox)) {
      if (!key.startsWith('v3:')) continue;
      for (const data of list) {
        assert.ok(JSON.stringify(data).includes('c200') || key === 'v3:maintenance' ||
                  key === 'v3:probe', `${key}: ${JSON.stringify(data)}`);
      }
    }
  });
});

describe('standalone pusher-js', () => {
  it('connects with wsHost, wsPort and forceTLS: false', async () => {
    const dom = new JSDOM('<!doctype html>', {url: srv.base + '/', runScripts: 'outside-only'});
    const window = dom.window;
    try {
      const file = path.join(path.dirname(require.resolve('pusher-js/package.json')), 'dist/web/pusher.js');
      window.eval(fs.readFileSync(file, 'utf8'));
      const pusher = new window.Pusher('anykey', {wsHost: '127.0.0.1', wsPort: srv.port,
                                                  forceTLS: false, enabledTransports: ['ws'],
                                                  cluster: 'local'});
      const got = [];
      const channel = pusher.subscribe(`twitch.pubsub.${CLIENT_ID}.100`);
      await new Promise((resolve) => channel.bind('pusher:subscription_succeeded', resolve));
      channel.bind('broadcast', (d) => got.push(plain(d)));
      await post('broadcast', tokens.bc100, {event: 'plain', data: {x: 1}});
      await waitFor('the pusher-js event', () => got.length === 1);
      assert.deepEqual(JSON.parse(got[0].message), {event: `sandbox:${CLIENT_ID}:plain`, data: {x: 1}});
      assert.equal(pusher.connection.state, 'connected');
      pusher.disconnect();
    } finally {
      window.close();
    }
  });
});
