// Real-client compatibility for rank, accumulate and json_store: the official
// @muxy/extensions-js 2.4.18 bundle in jsdom windows against a sandbox server.
//
//   bc          broadcaster, channel 100
//   v1, v2, v3  viewers of channel 100 (users 201, 202, 203)
//   vOther      viewer of channel 300 (user 301)
// SDK methods (dist/types/src/sdk.d.ts): rank(id, value), getRankData(id), clearRankData(id),
// accumulate(id, data), getAccumulateData(id, start), getJSONStore(id).
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer, mintToken, CLIENT_ID} from './lib/server.mjs';
import {openUser, closeAllUsers, rejection} from './lib/medkit_client.mjs';

let srv;
const U = {};
let anyFailed = false;

function check(name, fn) {
  it(name, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      anyFailed = true;
      throw e;
    }
  });
}

// Values from a jsdom window belong to another realm; compare plain JSON copies.
const plain = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));
async function eq(actualOrPromise, expected, msg) {
  assert.deepEqual(plain(await actualOrPromise), plain(expected), msg);
}
async function assertRefused(promise, reason, what) {
  const err = plain(await rejection(promise));
  assert.equal(typeof err, 'object', `${what}: rejection should be the parsed JSON body, got ${err}`);
  assert.equal(err.reason, reason, `${what}: ${JSON.stringify(err)}`);
}

before(async () => {
  try {
    srv = await startServer({stage: 'sandbox', store: 'rocksdb'});
    const users = {
      bc: {role: 'broadcaster', channelID: '100', userID: '100'},
      v1: {role: 'viewer', channelID: '100', userID: '201'},
      v2: {role: 'viewer', channelID: '100', userID: '202'},
      v3: {role: 'viewer', channelID: '100', userID: '203'},
      vOther: {role: 'viewer', channelID: '300', userID: '301'},
    };
    await Promise.all(Object.entries(users).map(async ([k, o]) => {
      U[k] = await openUser(srv.base, {clientID: CLIENT_ID, ...o});
    }));
  } catch (e) {
    anyFailed = true;
    throw e;
  }
});

after(async () => {
  closeAllUsers();
  if (srv) {
    await srv.stop();
    srv.cleanup();
  }
  setTimeout(() => {
    process.stderr.write('engagement_client.test.mjs: event loop still alive; forcing exit\n');
    process.exit(anyFailed ? 1 : 0);
  }, 5000).unref();
});

describe('rank through the SDK', () => {
  check('viewers rank, re-rank (original), the broadcaster reads and clears', async () => {
    await eq(U.bc.sdk.getRankData('colors'), {data: []});
    await eq(U.v1.sdk.rank('colors', 'red'), {accepted: true});
    await eq(U.v2.sdk.rank('colors', 'red'), {accepted: true});
    await eq(U.v3.sdk.rank('colors', 'blue'), {accepted: true});
    await eq(U.bc.sdk.getRankData('colors'), {data: [{key: 'red', score: 2}, {key: 'blue', score: 1}]});
    await eq(U.v2.sdk.rank('colors', 'blue'), {accepted: true, original: 'red'});
    await eq(U.bc.sdk.getRankData('colors'), {data: [{key: 'blue', score: 2}, {key: 'red', score: 1}]});
    // Sandbox: a viewer may read too (spec 12.26); another channel has its own rank.
    await eq(U.v1.sdk.getRankData('colors'), {data: [{key: 'blue', score: 2}, {key: 'red', score: 1}]});
    await eq(U.vOther.sdk.getRankData('colors'), {data: []});
    // Viewers cannot clear; the broadcaster can.
    await assertRefused(U.v1.sdk.clearRankData('colors'),
                        'The JWT role is not allowed to perform this operation.', 'viewer clear');
    await eq(U.bc.sdk.getRankData('colors'), {data: [{key: 'blue', score: 2}, {key: 'red', score: 1}]});
    await eq(U.bc.sdk.clearRankData('colors'), {});
    await eq(U.bc.sdk.getRankData('colors'), {data: []});
    await eq(U.v1.sdk.rank('colors', 'green'), {accepted: true});
    await eq(U.bc.sdk.getRankData('colors'), {data: [{key: 'green', score: 1}]});
  });

  check('the SDK refuses non-string values before sending', async () => {
    assert.throws(() => U.v1.sdk.rank('colors', 5));
  });
});

describe('accumulate through the SDK', () => {
  check('viewers accumulate; the broadcaster reads its channel from start', async () => {
    const before = Date.now() - 1000;
    await eq(U.v1.sdk.accumulate('awesomeness', {level: 1}), {});
    await eq(U.v2.sdk.accumulate('awesomeness', {level: 2, note: 'hi'}), {});
    await eq(U.vOther.sdk.accumulate('awesomeness', {level: 99}), {});
    const resp = plain(await U.bc.sdk.getAccumulateData('awesomeness', before));
    assert.deepEqual(resp.data.map((e) => e.data), [{level: 1}, {level: 2, note: 'hi'}]);
    assert.deepEqual(resp.data.map((e) => [e.channel_id, e.user_id, e.opaque_user_id]),
                     [['100', '201', 'U201'], ['100', '202', 'U202']]);
    assert.equal(resp.latest, resp.data[1].observed);
    // Polling from latest returns nothing new.
    await eq(U.bc.sdk.getAccumulateData('awesomeness', resp.latest), {data: [], latest: 0});
    // Viewers may not read.
    await assertRefused(U.v1.sdk.getAccumulateData('awesomeness', 0),
                        'The JWT role is not allowed to perform this operation.', 'viewer read');
    // A caller that forgets `start` sends start=undefined.
    await assertRefused(U.bc.sdk.getAccumulateData('awesomeness'), 'Malformed start parameter',
                        'start=undefined');
  });
});

describe('json_store through the SDK', () => {
  check('a backend writes with a minted token; viewers read with getJSONStore', async () => {
    const backend = mintToken({role: 'backend', channel: '100', user: '100', dataDir: srv.dataDir});
    const r = await srv.request('POST', 'json_store?id=basecamp', {token: backend, body: {camp: {x: 1, y: [2, 3]}}});
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, {});
    await eq(U.v1.sdk.getJSONStore('basecamp'), {camp: {x: 1, y: [2, 3]}});
    await eq(U.bc.sdk.getJSONStore('basecamp'), {camp: {x: 1, y: [2, 3]}});
    // Per channel: the other channel has none.
    await assertRefused(U.vOther.sdk.getJSONStore('basecamp'), 'Not Found', 'other channel');
    // Global ids are shared by every channel.
    const g = await srv.request('POST', 'json_store?id=global_news', {token: backend, body: {n: 1}});
    assert.equal(g.status, 200, g.text);
    await eq(U.vOther.sdk.getJSONStore('global_news'), {n: 1});
    // The default id.
    const d = await srv.request('POST', 'json_store', {token: backend, body: {d: true}});
    assert.equal(d.status, 200, d.text);
    await eq(U.v1.sdk.getJSONStore(), {d: true});
  });
});
