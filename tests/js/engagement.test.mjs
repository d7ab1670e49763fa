// json_store, accumulate and rank (spec 5.5, 5.6, 5.7, 8, 9, 12 items 5, 6, 26) against the real
// binary: roles, response shapes, limits, refusals that change nothing, data surviving a
// restart, and a concurrent rank burst over many connections whose final scores must be exact.
//
// A sandbox server (RocksDB) and a production server (extension prodext) run for the whole
// file. Each test uses fresh channel/user ids (and, in the sandbox, a fresh client id), so tests
// are independent.
import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer} from './lib/server.mjs';
import {tokenFactory, randomSecret, expectStatus, uid, REFUSED, PROD_CLIENT, prodConfig}
  from './lib/roles.mjs';

const SECRET = randomSecret();
let sb, prod, SB, PR;

before(async () => {
  [sb, prod] = await Promise.all([
    startServer({stage: 'sandbox', threads: 4}),
    startServer({stage: 'production', config: prodConfig(SECRET, randomSecret())}),
  ]);
  SB = tokenFactory(sb);
  PR = tokenFactory(prod, {secret: SECRET});
  PR.clientId = PROD_CLIENT;
});

after(async () => {
  await Promise.all([sb?.stop(), prod?.stop()]);
  sb?.cleanup();
  prod?.cleanup();
});

// A fresh scope on a token factory: call(method, endpoint, role, {channel, user, body, rawBody}).
function scope(f = SB) {
  const tag = uid('');
  const clientId = f.stage === 'sandbox' ? `cl${tag}` : f.clientId;
  const channel = `ch${tag}`;
  const s = {
    tag, channel, clientId,
    tok(role, {channel: ch = channel, user} = {}) {
      if (user === undefined) user = role === 'broadcaster' ? ch : `${role}${tag}`;
      return f.as(role, {channel: ch, user: role === 'anonymous' ? undefined : user, clientId});
    },
    call(method, endpoint, role, {body, rawBody, channel: ch, user} = {}) {
      return f.srv.request(method, endpoint, {token: s.tok(role, {channel: ch, user}), clientId, body, rawBody});
    },
  };
  return s;
}

const ok = (r, body, what) => expectStatus(r, 200, body, what);
const refused = (r, what) => expectStatus(r, 403, REFUSED, what);
// Asserts status and the reason (an "info" member may accompany it).
function fails(r, status, reason, what = '') {
  expectStatus(r, status, undefined, what);
  assert.equal(r.json?.reason, reason, `${what}: ${r.text}`);
  assert.deepEqual(Object.keys(r.json).filter((k) => k !== 'info'), ['reason'], r.text);
}
const PRIVILEGED = ['broadcaster', 'admin', 'backend', 'external'];
const UNPRIVILEGED = ['viewer', 'moderator', 'anonymous'];

// -------------------------------------------------------------------------------------------
describe('json_store', () => {
  test('GET of an unset key → 404 {"reason":"Not Found"}', async () => {
    const s = scope();
    fails(await s.call('GET', 'json_store?id=nothing', 'viewer'), 404, 'Not Found');
  });

  test('privileged roles write, every role reads; viewers are refused and nothing changes', async () => {
    const s = scope();
    for (const [i, role] of PRIVILEGED.entries()) {
      ok(await s.call('POST', 'json_store?id=basecamp', role, {body: {by: role, i}}), {}, role);
      for (const reader of [...PRIVILEGED, ...UNPRIVILEGED]) {
        ok(await s.call('GET', 'json_store?id=basecamp', reader), {by: role, i}, `${reader} reads`);
      }
    }
    for (const role of UNPRIVILEGED) {
      refused(await s.call('POST', 'json_store?id=basecamp', role, {body: {by: role}}), role);
    }
    ok(await s.call('GET', 'json_store?id=basecamp', 'viewer'), {by: 'external', i: 3});
  });

  test('channel scope vs global ids', async () => {
    const s = scope();
    ok(await s.call('POST', 'json_store?id=k', 'broadcaster', {body: {c: 1}}), {});
    ok(await s.call('POST', 'json_store?id=global_k', 'broadcaster', {body: {g: 1}}), {});
    fails(await s.call('GET', 'json_store?id=k', 'viewer', {channel: 'elsewhere'}), 404, 'Not Found');
    ok(await s.call('GET', 'json_store?id=global_k', 'viewer', {channel: 'elsewhere'}), {g: 1});
    ok(await s.call('GET', 'json_store?id=k', 'viewer'), {c: 1});
  });

  test('size limit (< 2048 bytes serialized), non-objects and bad ids → 400, unchanged', async () => {
    const s = scope();
    const fits = {s: 'x'.repeat(2039)};
    assert.equal(JSON.stringify(fits).length, 2047);
    ok(await s.call('POST', 'json_store?id=k', 'admin', {body: fits}), {});
    fails(await s.call('POST', 'json_store?id=k', 'admin', {body: {s: 'y'.repeat(2040)}}), 400, 'document too large');
    for (const raw of ['[1]', '5', '"str"', 'null', '{bad', '']) {
      expectStatus(await s.call('POST', 'json_store?id=k', 'admin', {rawBody: raw}), 400, undefined, raw);
    }
    for (const id of ['a.b', 'a-b', 'x'.repeat(65), 'a%20b']) {
      expectStatus(await s.call('POST', `json_store?id=${id}`, 'admin', {body: {}}), 400, undefined, id);
      expectStatus(await s.call('GET', `json_store?id=${id}`, 'viewer'), 400, undefined, id);
    }
    ok(await s.call('GET', 'json_store?id=k', 'viewer'), fits);
  });

  test('default id', async () => {
    const s = scope();
    ok(await s.call('POST', 'json_store', 'backend', {body: {d: true}}), {});
    ok(await s.call('GET', 'json_store?id=default', 'viewer'), {d: true});
  });
});

// -------------------------------------------------------------------------------------------
describe('accumulate', () => {
  test('any role posts; broadcaster reads its channel, admin/backend all, viewers refused', async () => {
    const s = scope();
    const roles = ['viewer', 'moderator', 'anonymous', 'broadcaster', 'admin', 'backend'];
    for (const [i, role] of roles.entries()) {
      ok(await s.call('POST', 'accumulate?id=buf', role, {body: {i}}), {}, role);
    }
    ok(await s.call('POST', 'accumulate?id=buf', 'viewer', {channel: 'other', body: {i: 99}}), {});
    const mine = await s.call('GET', 'accumulate?id=buf&start=0', 'broadcaster');
    expectStatus(mine, 200);
    assert.deepEqual(mine.json.data.map((e) => e.data.i), [0, 1, 2, 3, 4, 5]);
    assert.equal(mine.json.latest, mine.json.data.at(-1).observed);
    for (const role of ['admin', 'backend', 'external']) {
      const all = await s.call('GET', 'accumulate?id=buf&start=0', role, {channel: 'zzz'});
      expectStatus(all, 200);
      assert.deepEqual(all.json.data.map((e) => e.data.i), [0, 1, 2, 3, 4, 5, 99], role);
    }
    for (const role of UNPRIVILEGED) refused(await s.call('GET', 'accumulate?id=buf&start=0', role), role);
    // Entry shape.
    const first = mine.json.data[0];
    assert.deepEqual(Object.keys(first), ['observed', 'channel_id', 'opaque_user_id', 'user_id', 'data']);
    assert.equal(first.channel_id, s.channel);
    assert.equal(first.user_id, `viewer${s.tag}`);
    assert.equal(first.opaque_user_id, `Uviewer${s.tag}`);
    assert.ok(Number.isInteger(first.observed) && Math.abs(first.observed - Date.now()) < 60000);
    assert.equal(mine.json.data[2].user_id, '');  // anonymous: not shared
    assert.match(mine.json.data[2].opaque_user_id, /^A/);
    // Ascending.
    const obs = mine.json.data.map((e) => e.observed);
    assert.deepEqual(obs, [...obs].sort((a, b) => a - b));
  });

  test('start: exclusive, default 0, non-integer → 400 "Malformed start parameter"', async () => {
    const s = scope();
    for (let i = 0; i < 3; i++) {
      ok(await s.call('POST', 'accumulate?id=b', 'viewer', {body: {i}}), {});
      await new Promise((r) => setTimeout(r, 3));
    }
    const all = (await s.call('GET', 'accumulate?id=b', 'admin')).json;
    assert.equal(all.data.length, 3);
    const after0 = (await s.call('GET', `accumulate?id=b&start=${all.data[0].observed}`, 'admin')).json;
    assert.deepEqual(after0.data.map((e) => e.data.i), [1, 2]);
    ok(await s.call('GET', `accumulate?id=b&start=${all.latest}`, 'admin'), {data: [], latest: 0});
    for (const start of ['undefined', 'null', '', '1.5', 'abc', '12x']) {
      fails(await s.call('GET', `accumulate?id=b&start=${start}`, 'broadcaster'), 400, 'Malformed start parameter', start);
    }
    ok(await s.call('GET', 'accumulate?id=empty&start=0', 'admin'), {data: [], latest: 0});
  });

  test('payload < 256 bytes marshalled; non-objects → 400; nothing stored', async () => {
    const s = scope();
    const fits = {s: 'x'.repeat(247)};
    assert.equal(JSON.stringify(fits).length, 255);
    ok(await s.call('POST', 'accumulate?id=b', 'viewer', {body: fits}), {});
    fails(await s.call('POST', 'accumulate?id=b', 'viewer', {body: {s: 'x'.repeat(248)}}), 400, 'accumulate payload too large');
    for (const raw of ['[1]', '5', '"x"', 'null', '{bad']) {
      fails(await s.call('POST', 'accumulate?id=b', 'viewer', {rawBody: raw}), 400, 'Malformed json body', raw);
    }
    const r = (await s.call('GET', 'accumulate?id=b&start=0', 'admin')).json;
    assert.deepEqual(r.data.map((e) => e.data), [fits]);
  });

  test('concurrent posts are all kept, in a stable order', async () => {
    const s = scope();
    await Promise.all(Array.from({length: 120}, (_, i) =>
      s.call('POST', 'accumulate?id=burst', 'viewer', {user: `u${i}`, body: {i}}).then((r) => ok(r, {}))));
    const a = (await s.call('GET', 'accumulate?id=burst&start=0', 'admin')).json;
    const b = (await s.call('GET', 'accumulate?id=burst&start=0', 'broadcaster')).json;
    assert.equal(a.data.length, 120);
    assert.deepEqual(a.data.map((e) => e.data.i).sort((x, y) => x - y), Array.from({length: 120}, (_, i) => i));
    assert.deepEqual(b, a);
  });
});

// -------------------------------------------------------------------------------------------
describe('rank', () => {
  test('answers, replacement with "original", scores and shapes', async () => {
    const s = scope();
    ok(await s.call('GET', 'rank?id=empty', 'viewer'), {data: []});  // sandbox: viewers may read
    ok(await s.call('POST', 'rank?id=q', 'viewer', {user: 'a', body: {key: 'DOTA'}}), {accepted: true});
    ok(await s.call('POST', 'rank?id=q', 'viewer', {user: 'b', body: {key: 'DOTA'}}), {accepted: true});
    ok(await s.call('POST', 'rank?id=q', 'anonymous', {body: {key: 'LoL'}}), {accepted: true});
    ok(await s.call('POST', 'rank?id=q', 'viewer', {user: 'b', body: {key: 'LoL'}}),
       {accepted: true, original: 'DOTA'});
    ok(await s.call('POST', 'rank?id=q', 'viewer', {user: 'b', body: {key: 'LoL'}}),
       {accepted: true, original: 'LoL'});
    for (const role of ['broadcaster', 'admin', 'backend', 'external', 'viewer']) {
      ok(await s.call('GET', 'rank?id=q', role), {data: [{key: 'LoL', score: 2}, {key: 'DOTA', score: 1}]}, role);
    }
  });

  test('malformed answers → 400 "Malformed json body"; viewers cannot DELETE; nothing changes', async () => {
    const s = scope();
    ok(await s.call('POST', 'rank?id=q', 'viewer', {body: {key: 'x'}}), {accepted: true});
    for (const body of [{key: 1}, {key: null}, {key: ['x']}, {other: 'x'}, [], 'x']) {
      fails(await s.call('POST', 'rank?id=q', 'viewer', {body}), 400, 'Malformed json body', JSON.stringify(body));
    }
    fails(await s.call('POST', 'rank?id=q', 'viewer', {body: {key: 'k'.repeat(129)}}), 400, 'rank key too long');
    for (const role of UNPRIVILEGED) refused(await s.call('DELETE', 'rank?id=q', role), role);
    ok(await s.call('GET', 'rank?id=q', 'broadcaster'), {data: [{key: 'x', score: 1}]});
  });

  test('DELETE (broadcaster, admin, backend) clears; the next answer starts fresh', async () => {
    const s = scope();
    for (const role of ['broadcaster', 'admin', 'backend', 'external']) {
      ok(await s.call('POST', 'rank?id=q', 'viewer', {body: {key: role}}), {accepted: true});
      ok(await s.call('DELETE', 'rank?id=q', role), {}, role);
      ok(await s.call('GET', 'rank?id=q', 'broadcaster'), {data: []});
    }
  });

  test('channel scope and global ids', async () => {
    const s = scope();
    ok(await s.call('POST', 'rank?id=q', 'viewer', {body: {key: 'here'}}), {accepted: true});
    ok(await s.call('GET', 'rank?id=q', 'broadcaster', {channel: 'elsewhere'}), {data: []});
    ok(await s.call('POST', 'rank?id=global-q', 'viewer', {channel: 'c1', user: 'u', body: {key: 'a'}}),
       {accepted: true});
    ok(await s.call('POST', 'rank?id=global-q', 'viewer', {channel: 'c2', user: 'u', body: {key: 'b'}}),
       {accepted: true, original: 'a'});
    ok(await s.call('GET', 'rank?id=global-q', 'broadcaster', {channel: 'c3'}), {data: [{key: 'b', score: 1}]});
  });

  test('top 100 by score, ties by key ascending', async () => {
    const s = scope();
    // 120 keys; key k<i> gets 1 + (i % 3) answers.
    const jobs = [];
    const expected = [];
    let v = 0;
    for (let i = 0; i < 120; i++) {
      const key = `k${String(i).padStart(3, '0')}`;
      expected.push({key, score: 1 + (i % 3)});
      for (let n = 0; n <= i % 3; n++) {
        const user = `v${v++}`;
        jobs.push(() => s.call('POST', 'rank?id=top', 'viewer', {user, body: {key}}));
      }
    }
    for (let i = 0; i < jobs.length; i += 32) {
      const rs = await Promise.all(jobs.slice(i, i + 32).map((j) => j()));
      for (const r of rs) ok(r, {accepted: true});
    }
    expected.sort((a, b) => b.score - a.score || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    ok(await s.call('GET', 'rank?id=top', 'admin'), {data: expected.slice(0, 100)});
  });

  test('production: viewers may not read a rank (spec 12.26)', async () => {
    const s = scope(PR);
    ok(await s.call('POST', 'rank?id=q', 'viewer', {body: {key: 'x'}}), {accepted: true});
    refused(await s.call('GET', 'rank?id=q', 'viewer'));
    refused(await s.call('GET', 'rank?id=q', 'moderator'));
    ok(await s.call('GET', 'rank?id=q', 'broadcaster'), {data: [{key: 'x', score: 1}]});
  });

  test('concurrent burst over many connections: exact final scores', async () => {
    const s = scope();
    const keys = ['red', 'green', 'blue', 'cyan', 'pink', 'gold'];
    const VIEWERS = 300, ROUNDS = 4;
    const lastAnswer = new Map();
    // Each viewer answers ROUNDS times in sequence (so its last answer is known); all viewers run
    // at once, each request on whatever connection the pool gives it.
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
    await Promise.all(Array.from({length: VIEWERS}, async (_, v) => {
      const user = `burst${v}`;
      let previous;
      for (let round = 0; round < ROUNDS; round++) {
        const key = keys[rnd() % keys.length];
        const r = await s.call('POST', 'rank?id=burst', 'viewer', {user, body: {key}});
        ok(r, previous === undefined ? {accepted: true} : {accepted: true, original: previous});
        previous = key;
      }
      lastAnswer.set(user, previous);
    }));
    // Plus racing answers of the same viewers to another rank: each counts exactly once.
    await Promise.all(Array.from({length: 200}, (_, i) =>
      s.call('POST', 'rank?id=self', 'viewer', {user: `racer${i % 20}`, body: {key: keys[i % 3]}})
        .then((r) => expectStatus(r, 200))));
    const counts = {};
    for (const key of lastAnswer.values()) counts[key] = (counts[key] || 0) + 1;
    const expected = Object.entries(counts).map(([key, score]) => ({key, score}))
      .sort((a, b) => b.score - a.score || (a.key < b.key ? -1 : 1));
    ok(await s.call('GET', 'rank?id=burst', 'broadcaster'), {data: expected});
    const self = (await s.call('GET', 'rank?id=self', 'broadcaster')).json.data;
    assert.equal(self.reduce((n, e) => n + e.score, 0), 20);
  });
});

// -------------------------------------------------------------------------------------------
test('rank, accumulate and json_store survive a restart (RocksDB)', async () => {
  const srv = await startServer({stage: 'sandbox'});
  try {
    const f = tokenFactory(srv);
    const s = scope(f);
    ok(await s.call('POST', 'rank?id=q', 'viewer', {user: 'a', body: {key: 'x'}}), {accepted: true});
    ok(await s.call('POST', 'accumulate?id=b', 'viewer', {body: {n: 1}}), {});
    ok(await s.call('POST', 'json_store?id=k', 'broadcaster', {body: {v: 1}}), {});
    await srv.stop();
    const again = await startServer({stage: 'sandbox', dataDir: srv.dataDir});
    try {
      const s2 = {...s, call: (m, e, role, o = {}) => again.request(m, e, {token: s.tok(role, o), clientId: s.clientId, body: o.body})};
      ok(await s2.call('GET', 'rank?id=q', 'broadcaster'), {data: [{key: 'x', score: 1}]});
      ok(await s2.call('POST', 'rank?id=q', 'viewer', {user: 'a', body: {key: 'y'}}), {accepted: true, original: 'x'});
      ok(await s2.call('GET', 'rank?id=q', 'broadcaster'), {data: [{key: 'y', score: 1}]});
      const acc = (await s2.call('GET', 'accumulate?id=b&start=0', 'broadcaster')).json;
      assert.deepEqual(acc.data.map((e) => e.data), [{n: 1}]);
      ok(await s2.call('GET', 'json_store?id=k', 'viewer'), {v: 1});
    } finally {
      await again.stop();
    }
  } finally {
    srv.cleanup();
  }
});
