// Game codes (medkit-api.md 5.10, 8, 9, 12 item 19) against the real binary: upload, marking,
// redeeming with exact eligibility, exhaustion, DELETE's distributed counts, roles, and 1,000
// concurrent redeems over many connections that never hand out a code twice; the data survives
// a restart.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer} from './lib/server.mjs';
import {tokenFactory, uid, REFUSED} from './lib/roles.mjs';

let srv, T;

before(async () => {
  srv = await startServer({stage: 'sandbox', threads: 2});
  T = tokenFactory(srv);
});

after(async () => {
  await srv?.stop();
  srv?.cleanup();
});

// A fresh extension (client id) per test, so code sets never collide.
function scope() {
  const clientId = uid('cl');
  const backend = T.as('backend', {channel: 'c1', user: 'dev', clientId});
  const viewer = (user) => T.as(user ? 'viewer' : 'anonymous', {channel: 'c1', user, clientId});
  const req = (method, path, token, body) => T.req(method, path, token, {clientId, body});
  return {clientId, backend, viewer, req};
}

const ZEROS = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const elig = (nonzero) => ZEROS.map((_, i) => nonzero[i] || 0);
async function expectJson(promise, status, body, what) {
  const r = await promise;
  assert.equal(r.status, status, `${what}: ${r.text}`);
  // Error bodies: the reason decides ("info" may add detail).
  if (body?.reason !== undefined) assert.equal(r.json?.reason, body.reason, what);
  else if (body !== undefined) assert.deepEqual(r.json, body, what);
  return r;
}

test('upload, mark, redeem, read back, exhaust, delete', async () => {
  const s = scope();
  const v1 = s.viewer('201'), v2 = s.viewer('202');
  await expectJson(s.req('PUT', 'codes', s.backend,
    {codes: [['p0', 'p1'], ['h0']], names: ['Pistol skin', 'Fancy Hat'], indices: [0, 3]}), 200, {}, 'PUT');
  await expectJson(s.req('GET', 'codes', s.backend), 200, {names: ['Pistol skin', '', '', 'Fancy Hat']}, 'GET');
  await expectJson(s.req('POST', 'codes/mark_from_list', s.backend,
    {prize_limits: [2, 1], prizes: [0, 3], users: ['201', '202']}), 200, {}, 'mark');
  await expectJson(s.req('GET', 'codes/eligible', v1), 200, {eligible: elig({0: 2, 3: 1})}, 'eligible');
  await expectJson(s.req('GET', 'codes/eligibility', v2), 200, {eligible: elig({0: 2, 3: 1})}, 'alias');
  await expectJson(s.req('POST', 'codes/redeem', v1, {all_prizes: 0}), 200, {code: 'p0', all_prizes: ['p0']}, 'r1');
  await expectJson(s.req('POST', 'codes/redeem', v2, {prize: 0}), 200, {code: 'p1', all_prizes: ['p1']}, 'r2');
  await expectJson(s.req('POST', 'codes/redeem', v1, {all_prizes: 0}), 400, {reason: 'no codes left'}, 'exhausted');
  await expectJson(s.req('GET', 'codes/eligible', v1), 200, {eligible: elig({0: 1, 3: 1})}, 'unchanged');
  await expectJson(s.req('POST', 'codes/redeem', v1, {all_prizes: 3}), 200, {code: 'h0', all_prizes: ['h0']}, 'r3');
  await expectJson(s.req('POST', 'codes/redeem', v1, {all_prizes: 3}), 400, {reason: 'not eligible'}, 'used up');
  await expectJson(s.req('GET', 'codes/redeemed', v1), 200,
    {redeemed: [['p0'], [], [], ['h0'], [], [], [], [], [], []]}, 'redeemed v1');
  await expectJson(s.req('DELETE', 'codes', s.backend), 200, {distributed: [2, 0, 0, 1]}, 'DELETE');
  await expectJson(s.req('GET', 'codes', s.backend), 200, {names: []}, 'after DELETE');
});

test('re-PUT renames and appends only new codes', async () => {
  const s = scope();
  await expectJson(s.req('PUT', 'codes', s.backend, {codes: [['a', 'b']], names: ['one']}), 200, {});
  await expectJson(s.req('PUT', 'codes', s.backend, {codes: [['a', 'b', 'c']], names: ['two']}), 200, {});
  await expectJson(s.req('GET', 'codes', s.backend), 200, {names: ['two']});
  await expectJson(s.req('POST', 'codes/mark_from_list', s.backend, {prize_limits: [5], prizes: [0], users: ['9']}), 200, {});
  const v = s.viewer('9');
  const got = [];
  for (let i = 0; i < 3; i++) got.push((await expectJson(s.req('POST', 'codes/redeem', v, {all_prizes: 0}), 200)).json.code);
  assert.deepEqual(got, ['a', 'b', 'c']);
  await expectJson(s.req('POST', 'codes/redeem', v, {all_prizes: 0}), 400, {reason: 'no codes left'});
  await expectJson(s.req('DELETE', 'codes', s.backend), 200, {distributed: [3]});
});

test('roles and refusals leave the data unchanged', async () => {
  const s = scope();
  await expectJson(s.req('PUT', 'codes', s.backend, {codes: [['a']], names: ['A']}), 200, {});
  const others = [s.viewer('201'), T.as('broadcaster', {channel: 'c1', clientId: s.clientId})];
  for (const who of others) {
    await expectJson(s.req('PUT', 'codes', who, {codes: [['b']], names: ['B']}), 403, REFUSED);
    await expectJson(s.req('GET', 'codes', who), 403, REFUSED);
    await expectJson(s.req('DELETE', 'codes', who), 403, REFUSED);
    await expectJson(s.req('POST', 'codes/mark_from_list', who, {prize_limits: [1], prizes: [0], users: ['201']}), 403, REFUSED);
  }
  await expectJson(s.req('PUT', 'codes', s.backend, {codes: [['x'.repeat(64)]]}), 400, {reason: 'Invalid code'});
  await expectJson(s.req('PUT', 'codes', s.backend, {codes: [['x']], indices: [10]}), 400, {reason: 'Value out of bounds'});
  await expectJson(s.req('POST', 'codes/mark_from_list', s.backend, {prize_limits: [1], prizes: [0]}), 400, {reason: 'Invalid body'});
  await expectJson(s.req('GET', 'codes', s.backend), 200, {names: ['A']});
  await expectJson(s.req('GET', 'codes/eligible', s.viewer('201')), 200, {eligible: ZEROS});
  const anon = s.viewer(undefined);
  await expectJson(s.req('GET', 'codes/eligible', anon), 200, {eligible: ZEROS});
  await expectJson(s.req('POST', 'codes/redeem', anon, {all_prizes: 0}), 400, {reason: 'user id required'});
});

test('mark_from_poll marks the voters of the correct value', async () => {
  const s = scope();
  await expectJson(s.req('PUT', 'codes', s.backend, {codes: [['w0', 'w1']], names: ['Win']}), 200, {});
  for (const [user, value] of [['301', 3], ['302', 2], ['303', 3]]) {
    await expectJson(s.req('POST', 'vote?id=quiz', s.viewer(user), {value}), 200);
  }
  await expectJson(s.req('POST', 'codes/mark_from_poll', s.backend,
    {prize_limits: [1], prizes: [0], correct: 3, id: 'quiz', cutoff_timestamp: Math.floor(Date.now() / 1000) + 60}), 200, {});
  await expectJson(s.req('GET', 'codes/eligible', s.viewer('301')), 200, {eligible: elig({0: 1})});
  await expectJson(s.req('GET', 'codes/eligible', s.viewer('302')), 200, {eligible: ZEROS});
  await expectJson(s.req('GET', 'codes/eligible', s.viewer('303')), 200, {eligible: elig({0: 1})});
});

test('1,000 concurrent redeems over many connections never hand out a code twice', async () => {
  const s = scope();
  const CODES = 700, VIEWERS = 200, CLAIMS = 4, PER_VIEWER = 5;  // 800 claims, 1,000 requests
  const codes = Array.from({length: CODES}, (_, i) => `CODE-${String(i).padStart(4, '0')}`);
  await expectJson(s.req('PUT', 'codes', s.backend, {codes: [codes], names: ['Skin']}), 200, {});
  const users = Array.from({length: VIEWERS}, (_, i) => `v${i}`);
  await expectJson(s.req('POST', 'codes/mark_from_list', s.backend, {prize_limits: [CLAIMS], prizes: [0], users}), 200, {});
  const tokens = users.map((u) => s.viewer(u));
  const jobs = [];
  for (let round = 0; round < PER_VIEWER; round++) {
    users.forEach((u, i) => jobs.push(s.req('POST', 'codes/redeem', tokens[i], {all_prizes: 0}).then((r) => ({u, r}))));
  }
  const results = await Promise.all(jobs);
  const byUser = new Map(users.map((u) => [u, []]));
  let refused = 0;
  for (const {u, r} of results) {
    if (r.status === 200) {
      byUser.get(u).push(r.json.code);
      assert.ok(r.json.all_prizes.includes(r.json.code));
    } else {
      assert.equal(r.status, 400, r.text);
      assert.ok(['no codes left', 'not eligible'].includes(r.json.reason), r.text);
      refused++;
    }
  }
  const all = [...byUser.values()].flat();
  assert.equal(all.length, CODES, 'every code handed out (more claims than codes)');
  assert.equal(new Set(all).size, CODES, 'no code twice');
  assert.deepEqual([...all].sort(), codes);
  assert.equal(refused, VIEWERS * PER_VIEWER - CODES);
  let left = 0;
  await Promise.all(users.map(async (u, i) => {
    const mine = byUser.get(u);
    assert.ok(mine.length <= CLAIMS);
    const e = await expectJson(s.req('GET', 'codes/eligible', tokens[i]), 200);
    assert.equal(e.json.eligible[0], CLAIMS - mine.length, `eligibility of ${u}`);
    left += e.json.eligible[0];
    const red = await expectJson(s.req('GET', 'codes/redeemed', tokens[i]), 200);
    assert.deepEqual([...red.json.redeemed[0]].sort(), [...mine].sort(), `redeemed of ${u}`);
  }));
  assert.equal(left, VIEWERS * CLAIMS - CODES);

  // The store is durable: after a restart the records and the claim counter are still there.
  const dataDir = srv.dataDir;
  await srv.stop();
  srv = await startServer({stage: 'sandbox', dataDir});
  T = tokenFactory(srv);
  const again = (await expectJson(s.req('GET', 'codes/redeemed', tokens[0]), 200)).json.redeemed[0];
  assert.deepEqual([...again].sort(), [...byUser.get('v0')].sort());
  await expectJson(s.req('PUT', 'codes', s.backend, {codes: [['LAST']], names: ['Skin']}), 200, {});
  const withLeft = users.findIndex((u) => byUser.get(u).length < CLAIMS);
  await expectJson(s.req('POST', 'codes/mark_from_list', s.backend,
    {prize_limits: [1], prizes: [0], users: [users[withLeft]]}), 200, {});
  await expectJson(s.req('POST', 'codes/redeem', tokens[withLeft], {all_prizes: 0}), 200);
  await expectJson(s.req('POST', 'codes/redeem', tokens[withLeft], {all_prizes: 0}), 400, {reason: 'no codes left'});
  await expectJson(s.req('DELETE', 'codes', s.backend), 200, {distributed: [CODES + 1]});
});
