// Shared-identity listing (medkit-api.md 5.14) and datastream (5.13) against the real binary.
// user_ids: users who authenticate are listed for backends and validated admins, a page at a
// time (the page size is configured small here), and survive a restart. datastream: any role
// posts a JSON object for its channel and gets {}; refusals are exact.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer} from './lib/server.mjs';
import {tokenFactory, uid, REFUSED} from './lib/roles.mjs';

let srv, T;
const CONFIG = {limits: {user_ids_page: 3}};

before(async () => {
  srv = await startServer({stage: 'sandbox', config: CONFIG});
  T = tokenFactory(srv);
});

after(async () => {
  await srv?.stop();
  srv?.cleanup();
});

// Pages through user_ids; returns {ids, pages}.
async function listAll(token, clientId) {
  const ids = [], pages = [];
  let cursor = '0';
  for (let i = 0; i < 100; i++) {
    const r = await T.req('GET', `user_ids?cursor=${encodeURIComponent(cursor)}`, token, {clientId});
    assert.equal(r.status, 200, r.text);
    assert.equal(typeof r.json.next, 'string');
    pages.push(r.json.results.length);
    for (const e of r.json.results) {
      assert.deepEqual(Object.keys(e), ['twitch_id']);
      ids.push(e.twitch_id);
    }
    cursor = r.json.next;
    if (cursor === '0') return {ids, pages};
  }
  throw new Error('user_ids did not end');
}

test('users who authenticate are listed, three per page', async () => {
  const clientId = uid('cl');
  const users = ['1007', '1001', '1005', '1002', '1006', '1003', '1004'];
  // Concurrently, several requests per user (on both server threads).
  await Promise.all(users.flatMap((user) => [0, 1, 2].map(async () => {
    const r = await T.req('GET', 'viewer_state', T.as('viewer', {channel: 'c1', user, clientId}), {clientId});
    assert.equal(r.status, 200, r.text);
  })));
  const anon = await T.req('GET', 'viewer_state', T.as('anonymous', {channel: 'c1', clientId}), {clientId});
  assert.equal(anon.status, 200);
  const backend = T.as('backend', {channel: 'c1', user: '1999', clientId});
  const {ids, pages} = await listAll(backend, clientId);
  assert.deepEqual(ids, [...users, '1999'].sort());
  assert.deepEqual(pages, [3, 3, 2]);
  const admin = T.as('admin', {channel: 'c1', user: '1998', clientId});  // sandbox: validated
  assert.deepEqual((await listAll(admin, clientId)).ids, [...users, '1998', '1999'].sort());

  // Refused for viewers and broadcasters; other extensions see nothing of this one.
  for (const kind of ['viewer', 'broadcaster']) {
    const r = await T.req('GET', 'user_ids?cursor=0', T.as(kind, {channel: 'c1', user: '1001', clientId}), {clientId});
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.reason, REFUSED.reason);
  }
  const other = uid('cl');
  const empty = await T.req('GET', 'user_ids?cursor=0', T.as('backend', {channel: 'c1', user: '', clientId: other}), {clientId: other});
  assert.deepEqual(empty.json, {next: '0', results: []});

  // Durable: the listing survives a restart.
  const dataDir = srv.dataDir;
  await srv.stop();
  srv = await startServer({stage: 'sandbox', config: CONFIG, dataDir});
  T = tokenFactory(srv);
  assert.deepEqual((await listAll(T.as('backend', {channel: 'c1', clientId}), clientId)).ids,
                   [...users, '1998', '1999'].sort());
});

test('datastream: any role posts an object for its channel', async () => {
  const clientId = uid('cl');
  const req = (token, body, opts = {}) => T.req('POST', 'datastream', token, {clientId, body, ...opts});
  for (const kind of ['viewer', 'anonymous', 'broadcaster', 'admin', 'backend']) {
    const r = await req(T.as(kind, {channel: 'c1', user: kind === 'anonymous' ? undefined : 'u1', clientId}),
                        {spawnMonsterType: 'ogre', spawnPickupType: 'health'});
    assert.equal(r.status, 200, `${kind}: ${r.text}`);
    assert.deepEqual(r.json, {});
  }
  const viewer = T.as('viewer', {channel: 'c1', user: 'u1', clientId});
  const results = await Promise.all(Array.from({length: 6}, (_, i) => req(viewer, {n: i})));
  for (const r of results) assert.deepEqual([r.status, r.json], [200, {}]);
  const cases = [
    [viewer, [1, 2], 'Malformed input body'],
    [viewer, {x: 'a'.repeat(17000)}, 'datastream event too large'],
    [T.as('viewer', {channel: '', user: 'u1', clientId}), {a: 1}, 'channel id required'],
  ];
  for (const [token, body, reason] of cases) {
    const r = await req(token, body);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.reason, reason);
  }
  const noToken = await srv.request('POST', 'datastream', {body: {a: 1}, clientId});
  assert.equal(noToken.status, 401);
});
