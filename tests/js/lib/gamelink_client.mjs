// The project's own GameLink test client (WebSocket, as the C++ SDK speaks it: one JSON
// envelope per text frame, request ids 1..127), with every server message checked against the
// shapes of spec section 7 that the C++ SDK relies on (7.2 hard rules: one envelope per frame,
// meta fields and types, data xor errors, no null anywhere, non-empty poll results; the known
// update targets; Transaction and PollResult fields).
//
//   const g = await openGame(srv);                       // ws://.../0.2.0/<client id>
//   const r = await g.request('authenticate', undefined, {jwt, client_id});
//   g.updates('poll')                                    // pushes so far, for a target
//   g.close();
import assert from 'node:assert/strict';
import {WebSocket} from 'undici';
import {CLIENT_ID} from './server.mjs';
import {waitFor} from './streams.mjs';

const UPDATE_TARGETS = new Set(['channel', 'extension', 'config', 'poll', 'twitchPurchaseBits',
                                'datastream', 'matchmaking', 'match_poll']);

function noNulls(value, where) {
  if (value === null) throw new assert.AssertionError({message: `null at ${where}`});
  if (Array.isArray(value)) value.forEach((v, i) => noNulls(v, `${where}[${i}]`));
  else if (typeof value === 'object') for (const [k, v] of Object.entries(value)) noNulls(v, `${where}.${k}`);
}

const isInt = (v) => Number.isInteger(v);

export function checkPollResult(d, where = 'poll result') {
  assert.equal(typeof d.poll, 'object', `${where}: poll`);
  assert.equal(typeof d.poll.poll_id, 'string', `${where}: poll.poll_id`);
  assert.equal(typeof d.poll.prompt, 'string', `${where}: poll.prompt`);
  assert.ok(Array.isArray(d.poll.options), `${where}: poll.options`);
  assert.ok(['pending', 'active', 'expired'].includes(d.poll.status), `${where}: status ${d.poll.status}`);
  assert.ok(Array.isArray(d.results) && d.results.length > 0, `${where}: results must be non-empty`);
  d.results.forEach((n) => assert.ok(isInt(n), `${where}: results are integers`));
  assert.ok(isInt(d.count), `${where}: count`);
  assert.equal(typeof d.mean, 'number', `${where}: mean`);
  assert.equal(typeof d.sum, 'number', `${where}: sum`);
  assert.equal(typeof d.stddev, 'number', `${where}: stddev`);
}

export function checkTransaction(t, where = 'transaction') {
  for (const k of ['id', 'muxy_id', 'sku', 'displayName', 'userId', 'username', 'currency']) {
    assert.equal(typeof t[k], 'string', `${where}: ${k}`);
  }
  assert.ok(isInt(t.cost), `${where}: cost must be an integer`);
  assert.ok(isInt(t.timestamp), `${where}: timestamp must be an integer (ms)`);
  assert.ok(['bits', 'coins'].includes(t.currency), `${where}: currency`);
}

// Checks one raw frame; returns the parsed envelope. isResponse(m): whether m answers an
// outstanding request (the legacy "update" request is answered with action "update").
export function checkServerFrame(text, isResponse = () => false) {
  let m;
  try {
    m = JSON.parse(text);  // two envelopes in one frame would not parse
  } catch (e) {
    throw new assert.AssertionError({message: `frame is not one JSON document: ${text.slice(0, 200)}`});
  }
  assert.equal(typeof m, 'object');
  assert.ok(m.meta && typeof m.meta === 'object', 'meta');
  assert.ok(isInt(m.meta.request_id) && m.meta.request_id >= 0 && m.meta.request_id <= 65535, 'meta.request_id');
  assert.equal(typeof m.meta.action, 'string', 'meta.action');
  assert.equal(typeof m.meta.target, 'string', 'meta.target');
  assert.ok(isInt(m.meta.timestamp), 'meta.timestamp');
  assert.ok(m.meta.timestamp > 1e12 && m.meta.timestamp < 1e14, 'meta.timestamp is in ms');
  assert.ok(('data' in m) !== ('errors' in m), 'exactly one of data and errors');
  noNulls(m, 'envelope');
  if (m.errors) {
    assert.ok(Array.isArray(m.errors) && m.errors.length > 0, 'errors');
    for (const e of m.errors) {
      assert.ok(isInt(e.number) && e.number === e.status, 'error number/status');
      assert.equal(typeof e.title, 'string');
      assert.equal(typeof e.detail, 'string');
    }
  }
  if (m.meta.action === 'update' && !isResponse(m)) {
    assert.equal(m.meta.request_id, 65535, 'pushes use request_id 65535');
    assert.ok(UPDATE_TARGETS.has(m.meta.target), `unknown update target ${m.meta.target}`);
    const d = m.data;
    if (m.meta.target === 'channel' || m.meta.target === 'extension') {
      assert.equal(typeof d.state, 'object');
      assert.equal(d.topic_id, m.meta.target);
    }
    if (m.meta.target === 'config') {
      assert.equal(typeof d.config, 'object');
      assert.ok(['channel', 'extension'].includes(d.config_id));
    }
    if (m.meta.target === 'poll') checkPollResult(d, 'poll update');
    if (m.meta.target === 'twitchPurchaseBits') checkTransaction(d, 'purchase update');
    if (m.meta.target === 'datastream') {
      assert.ok(Array.isArray(d.events) && d.events.length > 0);
      for (const e of d.events) assert.ok(isInt(e.timestamp) && 'event' in e);
    }
  }
  return m;
}

// Opens a GameLink socket. path defaults to /0.2.0/<clientId>.
export async function openGame(srv, {clientId = CLIENT_ID, path} = {}) {
  const url = `ws://127.0.0.1:${srv.port}${path || `/0.2.0/${clientId}`}`;
  const ws = new WebSocket(url);
  const frames = [];
  const violations = [];
  const waiting = new Map();  // request_id -> {action, resolve}
  let closeEvent = null;
  const closed = new Promise((resolve) => { ws.onclose = (e) => { closeEvent = e; resolve(e); }; });
  ws.onmessage = (e) => {
    let m;
    try {
      m = checkServerFrame(e.data, (x) => waiting.get(x.meta.request_id)?.action === x.meta.action);
    } catch (err) {
      violations.push(err);
      return;
    }
    frames.push(m);
    const w = waiting.get(m.meta.request_id);
    if (w && w.action === m.meta.action && (m.meta.request_id !== 65535 || m.meta.action !== 'update')) {
      waiting.delete(m.meta.request_id);
      w.resolve(m);
    }
  };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  let next = 0;
  const g = {
    ws, frames, violations, closed,
    closeEvent: () => closeEvent,
    // Sends one request and resolves with its response envelope (the SDK's 1..127 ids).
    request(action, target, data, {requestId, timeoutMs = 10000} = {}) {
      next = (next % 127) + 1;
      const id = requestId ?? next;
      const params = {request_id: id};
      if (target !== undefined) params.target = target;
      const msg = {action, params};
      if (data !== undefined) msg.data = data;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`no response to ${action} ${target || ''} (request ${id})`));
        }, timeoutMs);
        waiting.set(id, {action, resolve: (m) => { clearTimeout(timer); resolve(m); }});
        ws.send(JSON.stringify(msg));
      });
    },
    // Resolves with the data of a successful response; throws on an error response.
    async ok(action, target, data) {
      const r = await g.request(action, target, data);
      assert.equal(r.meta.action, action);
      assert.equal(r.meta.target, target || '');
      if (r.errors) throw new Error(`${action} ${target || ''}: ${JSON.stringify(r.errors)}`);
      return r.data;
    },
    async fails(action, target, data, number) {
      const r = await g.request(action, target, data);
      assert.ok(r.errors, `${action} ${target || ''} should fail: ${JSON.stringify(r.data)}`);
      if (number !== undefined) assert.equal(r.errors[0].number, number, JSON.stringify(r.errors));
      return r.errors[0];
    },
    updates(target) {
      return frames.filter((m) => m.meta.action === 'update' && m.meta.request_id === 65535 &&
                                  (!target || m.meta.target === target));
    },
    async waitUpdates(target, n, timeoutMs = 10000) {
      await waitFor(`${n} ${target} updates`, () => g.updates(target).length >= n, timeoutMs);
      return g.updates(target);
    },
    async authenticate(token, clientId2 = clientId) {
      return g.ok('authenticate', undefined, {jwt: token, client_id: clientId2});
    },
    close() { try { ws.close(); } catch { /* already */ } },
  };
  return g;
}
