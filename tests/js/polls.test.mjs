// Polls and votes (spec 5.8) against the real binary: the endpoints over HTTP, exact statistics
// under load (64 concurrent connections, 10,000 viewers voting and re-voting on one poll), and a
// kill -9 under load followed by a restart on the same data directory (every acknowledged vote
// is there, an in-flight vote may or may not be, and the statistics equal the per-viewer
// records).
import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer, CLIENT_ID} from './lib/server.mjs';

const REFUSED = {reason: 'The JWT role is not allowed to perform this operation.'};

// Viewer tokens for ids, minted with POST authtoken user_ids lists (≤ 1000 per call).
async function viewerTokens(srv, channel, ids) {
  const tokens = [];
  for (let i = 0; i < ids.length; i += 1000) {
    const batch = ids.slice(i, i + 1000);
    const r = await srv.request('POST', 'authtoken', {
      body: {app_id: CLIENT_ID, channel_id: channel, role: 'viewer', user_ids: batch},
      headers: {'Content-Type': 'application/json'}});
    assert.equal(r.status, 200, r.text);
    tokens.push(...(batch.length === 1 ? [r.json.token] : r.json.tokens));
  }
  assert.equal(tokens.length, ids.length);
  return tokens;
}

// Statistics per the spec from each viewer's current vote {value, count}.
function expectedStats(votes) {
  let count = 0, sum = 0, sumsq = 0;
  const specific = new Array(32).fill(0);
  for (const {value, count: c} of votes) {
    count += c;
    sum += value * c;
    sumsq += value * value * c;
    if (value >= 0 && value < 32) specific[value] += c;
  }
  const mean = count ? sum / count : 0;
  const stddev = count < 2 ? 0 : Math.sqrt((count * sumsq - sum * sum) / (count * (count - 1)));
  return {count, sum, mean, stddev, specific};
}

function assertStats(actual, expected, what) {
  assert.equal(actual.count, expected.count, `${what}: count`);
  assert.equal(actual.sum, expected.sum, `${what}: sum`);
  assert.deepEqual(actual.specific, expected.specific, `${what}: specific`);
  assert.ok(Math.abs(actual.mean - expected.mean) <= 1e-9 * Math.max(1, Math.abs(expected.mean)),
            `${what}: mean ${actual.mean} vs ${expected.mean}`);
  assert.ok(Math.abs(actual.stddev - expected.stddev) <= 1e-9 * Math.max(1, expected.stddev),
            `${what}: stddev ${actual.stddev} vs ${expected.stddev}`);
  assert.deepEqual(actual.decay, {});
}

async function post(base, token, path, body) {
  const res = await fetch(`${base}/v1/e/${path}`, {
    method: 'POST',
    headers: {'Authorization': `${CLIENT_ID} ${token}`,
              'Content-Type': 'application/x-www-form-urlencoded; charset=UTF-8'},
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return {status: res.status, text, json: text ? JSON.parse(text) : undefined};
}

// Deterministic pseudo-random numbers (mulberry32).
function rng(seed) {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('poll endpoints over HTTP', () => {
  let srv, bc, backend, v1, v2;
  before(async () => {
    srv = await startServer({stage: 'sandbox'});
    bc = await srv.sandboxToken({role: 'broadcaster', channel_id: '10'});
    backend = await srv.sandboxToken({role: 'backend', channel_id: '10'});
    [v1, v2] = await viewerTokens(srv, '10', ['201', '202']);
  });
  after(async () => { await srv?.stop(); srv?.cleanup(); });

  test('vote, re-vote, read, logs, config, modifier, delete', async () => {
    const zero = await srv.request('GET', 'vote?id=color', {token: v1});
    assert.equal(zero.status, 200);
    assert.deepEqual(zero.json, {stddev: 0, mean: 0, sum: 0, count: 0, specific: new Array(32).fill(0), decay: {}});

    let r = await post(srv.base, v1, 'vote?id=color', {value: 1});
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.vote, 1);
    r = await post(srv.base, v2, 'vote?id=color', {value: 3, count: 2});
    assert.equal(r.json.count, 3);
    r = await post(srv.base, v1, 'vote?id=color', {value: 2});
    assertStats(r.json, expectedStats([{value: 2, count: 1}, {value: 3, count: 2}]), 'after re-vote');
    assert.equal(r.json.vote, 2);
    const mine = await srv.request('GET', 'vote?id=color', {token: v2});
    assert.equal(mine.json.vote, 3);

    const logs = await srv.request('GET', 'vote_logs?id=color', {token: backend});
    assert.equal(logs.status, 200);
    assert.deepEqual(logs.json.result.map((e) => [e.identifier, e.opaque, e.value]),
                     [['201', 'U201', 1], ['202', 'U202', 3], ['201', 'U201', 2]]);
    for (const e of logs.json.result) assert.ok(Math.abs(e.timestamp - Date.now()) < 60000, 'ms timestamps');
    assert.deepEqual((await srv.request('GET', 'vote_logs?id=color', {token: v1})).json, REFUSED);
    assert.equal((await srv.request('GET', 'vote_logs?id=color', {token: bc})).status, 403);

    assert.equal((await srv.request('GET', 'vote_config?id=color', {token: v1})).status, 404);
    r = await post(srv.base, bc, 'vote_config', {id: 'color', config: {prompt: 'Color?', options: ['red', 'blue']}});
    assert.equal(r.status, 200, r.text);
    const cfg = await srv.request('GET', 'vote_config?id=color', {token: v1});
    assert.equal(cfg.json.prompt, 'Color?');
    assert.deepEqual(cfg.json.options, ['red', 'blue']);
    assert.equal(cfg.json.status, 'active');
    assert.equal((await post(srv.base, v1, 'vote_config', {id: 'color', config: {}})).status, 403);

    r = await post(srv.base, backend, 'vote_modifier?id=color', {user: '201', add: 1});
    assert.equal(r.status, 200, r.text);
    const weighted = await srv.request('GET', 'vote?id=color', {token: v1});
    assertStats(weighted.json, expectedStats([{value: 2, count: 2}, {value: 3, count: 2}]), 'modifier');

    r = await post(srv.base, v1, 'vote?id=color', {value: 129});
    assert.deepEqual([r.status, r.json], [400, {reason: 'Value out of bounds'}]);
    r = await post(srv.base, v1, 'vote?id=color', {value: 1, count: 31});
    assert.deepEqual([r.status, r.json], [400, {reason: 'Count out of bounds'}]);

    const refused = await srv.request('DELETE', 'vote?id=color', {token: v1});
    assert.deepEqual([refused.status, refused.json], [403, REFUSED]);
    const del = await srv.request('DELETE', 'vote?id=color', {token: bc});
    assert.deepEqual([del.status, del.json], [200, {}]);
    assert.equal((await srv.request('GET', 'vote?id=color', {token: v1})).json.count, 0);
    assert.equal((await srv.request('GET', 'vote_config?id=color', {token: v1})).status, 404);
    // DELETE keeps the vote log.
    assert.equal((await srv.request('GET', 'vote_logs?id=color', {token: backend})).json.result.length, 3);
  });
});

describe('64 connections, 10,000 viewers on one poll', () => {
  let srv;
  before(async () => { srv = await startServer({stage: 'sandbox', threads: 2}); });
  after(async () => { await srv?.stop(); srv?.cleanup(); });

  test('statistics equal what each viewer last sent', async () => {
    const VIEWERS = 10000, WORKERS = 64, REVOTES = 3200;
    const ids = Array.from({length: VIEWERS}, (_, i) => `lv${i}`);
    const tokens = await viewerTokens(srv, '500', ids);
    const last = new Array(VIEWERS);
    let acked = 0;
    await Promise.all(Array.from({length: WORKERS}, async (_, w) => {
      const random = rng(w + 1);
      const mine = [];
      for (let i = w; i < VIEWERS; i += WORKERS) mine.push(i);
      const plan = [...mine];
      for (let k = 0; k < REVOTES / WORKERS; k++) plan.push(mine[Math.floor(random() * mine.length)]);
      for (const i of plan) {
        const vote = {value: Math.floor(random() * 50) - 10, count: 1 + Math.floor(random() * 3)};
        const r = await post(srv.base, tokens[i], 'vote?id=load', vote);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.vote, vote.value);
        last[i] = vote;
        acked++;
      }
    }));
    const expected = expectedStats(last);
    const got = await srv.request('GET', 'vote?id=load', {token: tokens[0]});
    assertStats(got.json, expected, 'GET vote');
    assert.equal(got.json.vote, last[0].value);
    // The log has every acknowledged vote.
    const backend = await srv.sandboxToken({role: 'backend', channel_id: '500'});
    const logs = await srv.request('GET', 'vote_logs?id=load', {token: backend});
    assert.equal(logs.json.result.length, acked);
    // A sample of viewers reads back their own vote.
    for (let i = 0; i < VIEWERS; i += 97) {
      const r = await srv.request('GET', 'vote?id=load', {token: tokens[i]});
      assert.equal(r.json.vote, last[i].value, `viewer ${i}`);
    }
  });
});

describe('kill -9 under load', () => {
  let srv;
  after(async () => { await srv?.stop(); srv?.cleanup(); });

  test('every acknowledged vote survives; stats equal the per-viewer records', async () => {
    const VIEWERS = 2000, WORKERS = 32;
    srv = await startServer({stage: 'sandbox', threads: 2});
    const ids = Array.from({length: VIEWERS}, (_, i) => `cv${i}`);
    const tokens = await viewerTokens(srv, '600', ids);
    const viewers = ids.map(() => ({acked: [], pending: undefined}));
    let acks = 0, stop = false, killing = null;
    const workers = Array.from({length: WORKERS}, async (_, w) => {
      const random = rng(100 + w);
      const mine = [];
      for (let i = w; i < VIEWERS; i += WORKERS) mine.push(i);
      for (let k = 0; !stop; k++) {
        const i = mine[k % mine.length];
        const value = Math.floor(random() * 257) - 128;
        viewers[i].pending = value;
        let r;
        try {
          r = await post(srv.base, tokens[i], 'vote?id=crash', {value});
        } catch {
          return;  // the server is gone: this vote stays in flight
        }
        assert.equal(r.status, 200, r.text);
        viewers[i].acked.push(value);
        viewers[i].pending = undefined;
        if (++acks === 6000 && !killing) {
          stop = true;
          killing = srv.kill9();
        }
      }
    });
    await Promise.all(workers);
    await killing;
    const inFlight = viewers.filter((v) => v.pending !== undefined).length;

    const dataDir = srv.dataDir;
    srv = await startServer({stage: 'sandbox', threads: 2, dataDir});
    const backend = await srv.sandboxToken({role: 'backend', channel_id: '600'});
    const logs = await srv.request('GET', 'vote_logs?id=crash', {token: backend});
    assert.equal(logs.status, 200);
    const logged = new Map();
    for (const e of logs.json.result) {
      if (!logged.has(e.identifier)) logged.set(e.identifier, []);
      logged.get(e.identifier).push(e.value);
    }
    const current = [];
    for (let i = 0; i < VIEWERS; i++) {
      const v = viewers[i];
      const seen = logged.get(ids[i]) || [];
      // Every acknowledged vote is there, in order; an in-flight one may follow.
      assert.deepEqual(seen.slice(0, v.acked.length), v.acked, `viewer ${i} acknowledged votes`);
      if (v.pending === undefined) {
        assert.equal(seen.length, v.acked.length, `viewer ${i}: nothing extra`);
      } else {
        assert.ok(seen.length === v.acked.length ||
                  (seen.length === v.acked.length + 1 && seen.at(-1) === v.pending),
                  `viewer ${i}: in-flight vote either landed or not`);
      }
      if (seen.length) current.push({value: seen.at(-1), count: 1});
      v.current = seen.length ? seen.at(-1) : undefined;
    }
    // Each viewer's own record (GET vote with their token) agrees with the log.
    await Promise.all(Array.from({length: WORKERS}, async (_, w) => {
      for (let i = w; i < VIEWERS; i += WORKERS) {
        const own = await srv.request('GET', 'vote?id=crash', {token: tokens[i]});
        assert.equal(own.status, 200);
        assert.equal(own.json.vote, viewers[i].current, `viewer ${i} record`);
      }
    }));
    const stats = await srv.request('GET', 'vote?id=crash', {token: backend});
    assertStats(stats.json, expectedStats(current), 'stats after restart');
    assert.ok(acks >= 6000);
    assert.ok(inFlight <= WORKERS);
  });
});
