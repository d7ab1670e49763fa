// Durability: every write acknowledged with 200 survives a SIGKILL of the RocksDB server, and
// sandbox tokens minted before the crash still work after the restart (signing key persisted).
// A graceful restart keeps data as well.
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer, CLIENT_ID, RawConnection, rawRequestText} from './lib/server.mjs';

const VIEWERS = 200;      // distinct viewers on one channel
const CHANNELS = 50;      // distinct channels, one broadcaster each
const WRITES = 2000;      // acknowledged writes before the crash
const CONCURRENCY = 32;   // requests in flight

// Documents: viewer_state and extension_viewer_state of each viewer, channel_state of each channel.
function makeDocs(viewerTokens, broadcasterTokens) {
  const docs = [];
  viewerTokens.forEach((token, i) => {
    docs.push({id: `vs:${i}`, path: 'viewer_state', token});
    docs.push({id: `evs:${i}`, path: 'extension_viewer_state', token});
  });
  broadcasterTokens.forEach((token, i) => docs.push({id: `cs:${i}`, path: 'channel_state', token}));
  for (const d of docs) { d.acked = undefined; d.pending = undefined; d.writes = 0; }
  return docs;
}

async function post(base, doc, value) {
  const res = await fetch(`${base}/v1/e/${doc.path}`, {
    method: 'POST',
    headers: {'Authorization': `${CLIENT_ID} ${doc.token}`, 'Content-Type': 'application/x-www-form-urlencoded; charset=UTF-8'},
    body: JSON.stringify(value),
  });
  const text = await res.text();
  return {status: res.status, text};
}

// Runs `workers` loops; worker w owns the docs with index % workers == w, so writes to one
// document are strictly sequential and "the last acknowledged value" is well defined.
// shouldStop() is checked before each write. Each write records doc.pending until answered.
async function writeLoop(base, docs, {workers, shouldStop, onAck, phase, tolerateErrors}) {
  let seq = 0;
  const errors = [];
  await Promise.all(Array.from({length: workers}, async (_, w) => {
    const mine = docs.filter((_, i) => i % workers === w);
    for (let k = 0; ; k++) {
      if (shouldStop()) return;
      const doc = mine[k % mine.length];
      const value = {doc: doc.id, phase, n: ++seq, w: doc.writes + 1, pad: 'x'.repeat((seq * 37) % 300)};
      doc.pending = value;
      let r;
      try {
        r = await post(base, doc, value);
      } catch (e) {
        if (!tolerateErrors) throw e;
        return;  // server gone: this write stays pending (may or may not have landed)
      }
      if (r.status !== 200) {
        if (!tolerateErrors) throw new Error(`${doc.path} ${doc.id}: ${r.status} ${r.text}`);
        errors.push(r);
        return;
      }
      doc.acked = value;
      doc.pending = undefined;
      doc.writes++;
      onAck(doc);
    }
  }));
  return errors;
}

async function readDoc(base, doc) {
  const res = await fetch(`${base}/v1/e/${doc.path}`, {headers: {'Authorization': `${CLIENT_ID} ${doc.token}`}});
  const text = await res.text();
  assert.equal(res.status, 200, `GET ${doc.path} for ${doc.id} after restart: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function readAll(base, docs) {
  const out = new Array(docs.length);
  let next = 0;
  await Promise.all(Array.from({length: CONCURRENCY}, async () => {
    while (next < docs.length) {
      const i = next++;
      out[i] = await readDoc(base, docs[i]);
    }
  }));
  return out;
}

async function mintTokens(srv) {
  // 200 viewer tokens in one authtoken call (user_ids), plus one broadcaster per channel.
  const userIds = Array.from({length: VIEWERS}, (_, i) => `cv${i}`);
  const r = await srv.request('POST', 'authtoken', {body: {app_id: CLIENT_ID, channel_id: 'crash-ch', role: 'viewer', user_ids: userIds},
                                                    headers: {'Content-Type': 'application/json'}});
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.tokens.length, VIEWERS);
  const broadcasters = [];
  for (let i = 0; i < CHANNELS; i++) broadcasters.push(await srv.sandboxToken({role: 'broadcaster', channel_id: `crash-c${i}`}));
  return {viewers: r.json.tokens, broadcasters};
}

describe('crash durability (rocksdb)', () => {
  let srv, dataDir;
  const servers = [];
  const start = async (opts) => { const s = await startServer(opts); servers.push(s); return s; };
  after(async () => {
    for (const s of servers) await s.kill9();
    if (dataDir) servers[0].cleanup();
  });

  it('every acknowledged write survives kill -9; old tokens still work', async (t) => {
    const t0 = Date.now();
    srv = await start({store: 'rocksdb', threads: 4});
    dataDir = srv.dataDir;
    const tokens = await mintTokens(srv);
    const docs = makeDocs(tokens.viewers, tokens.broadcasters);

    // Phase 1: exactly 2000 acknowledged writes, 32 in flight.
    let started = 0, acked = 0;
    await writeLoop(srv.base, docs, {
      workers: CONCURRENCY, phase: 1,
      shouldStop: () => started++ >= WRITES,
      onAck: () => { acked++; },
    });
    assert.equal(acked, WRITES, 'all phase-1 writes acknowledged');
    const tPhase1 = Date.now() - t0;
    assert.ok(docs.every((d) => d.pending === undefined));
    assert.ok(docs.filter((d) => d.acked).length >= docs.length - 1, 'almost every document written');

    // Phase 2: keep writing with 32 in flight and kill -9 the server in the middle of it.
    let phase2Acks = 0, killed = false;
    let killNow;
    const killSignal = new Promise((r) => { killNow = r; });
    const loop = writeLoop(srv.base, docs, {
      workers: CONCURRENCY, phase: 2, tolerateErrors: true,
      shouldStop: () => false,
      onAck: () => { if (++phase2Acks === 300) killNow(); },
    });
    let timer;
    await Promise.race([killSignal, new Promise((r) => { timer = setTimeout(r, 10000); })]);
    clearTimeout(timer);
    const exit = await srv.kill9();
    killed = true;
    assert.equal(exit.signal, 'SIGKILL');
    const errors = await loop;  // every worker ends with a failed request (connection refused/reset)
    assert.ok(killed);
    assert.ok(phase2Acks >= 300, `phase 2 acknowledged ${phase2Acks}`);
    assert.ok(errors.every((e) => e.status >= 500 || e.status === 503), `unexpected refusals: ${JSON.stringify(errors.slice(0, 3))}`);
    const inFlight = docs.filter((d) => d.pending).length;

    // Restart on the same data dir and read every document back with the pre-crash tokens.
    const tRestart = Date.now();
    const again = await start({dataDir, store: 'rocksdb'});
    const got = await readAll(again.base, docs);
    let landedPending = 0;
    const mismatches = [];
    docs.forEach((d, i) => {
      const expected = d.acked ?? {};
      if (JSON.stringify(got[i]) === JSON.stringify(expected)) return;
      // An unacknowledged write in flight at the crash may or may not have landed.
      if (d.pending && JSON.stringify(got[i]) === JSON.stringify(d.pending)) { landedPending++; return; }
      mismatches.push({doc: d.id, expected, pending: d.pending, got: got[i]});
    });
    assert.deepEqual(mismatches.slice(0, 5), [], `${mismatches.length} documents lost acknowledged writes ` +
                     `(${phase2Acks} phase-2 acks, ${inFlight} in flight at the crash, ${landedPending} of those landed)`);

    t.diagnostic(`phase 1: ${WRITES} writes in ${tPhase1} ms; phase 2: ${phase2Acks} acks, ${inFlight} in flight at the kill, ` +
                 `${landedPending} of those landed; read-back after restart ${Date.now() - tRestart} ms`);

    // Tokens from before the crash still authenticate (the signing key is persisted).
    const ui = await again.request('GET', 'user_info', {token: tokens.viewers[0]});
    assert.equal(ui.status, 200, ui.text);
    const all = await again.request('GET', 'all_state', {token: tokens.viewers[7]});
    assert.equal(all.status, 200);
    assert.deepEqual(all.json.viewer, docs[14].acked ?? {});   // vs:7
    assert.deepEqual(all.json.extension_viewer, docs[15].acked ?? {});  // evs:7

    // The restarted server accepts new writes with the old tokens and new tokens alike.
    const w = await again.request('POST', 'viewer_state', {token: tokens.viewers[0], body: {after: 'crash'}});
    assert.equal(w.status, 200, w.text);
    docs[0].acked = {after: 'crash'}; docs[0].pending = undefined;
    const fresh = await again.sandboxToken({role: 'viewer', channel_id: 'crash-ch', user_id: 'cv0'});
    assert.deepEqual((await again.request('GET', 'viewer_state', {token: fresh})).json, {after: 'crash'});

    // A graceful restart afterwards keeps everything (including what landed from in-flight writes).
    assert.deepEqual(await again.stop(), {code: 0, signal: null});
    const third = await start({dataDir, store: 'rocksdb'});
    const got3 = await readAll(third.base, docs);
    const changed = docs.filter((d, i) => JSON.stringify(got3[i]) !== JSON.stringify(i === 0 ? d.acked : got[i]));
    assert.deepEqual(changed.map((d) => d.id), [], 'documents changed across a graceful restart');
    assert.deepEqual(await third.stop(), {code: 0, signal: null});
  });

  it('pipelined batches (one WAL flush per batch): every acknowledged write survives kill -9', async (t) => {
    const CONNS = 8, PER_CONN = 25;
    const p = await start({store: 'rocksdb', threads: 4});
    const userIds = Array.from({length: CONNS * PER_CONN}, (_, i) => `pv${i}`);
    const r = await p.request('POST', 'authtoken', {body: {app_id: CLIENT_ID, channel_id: 'pipe-ch', role: 'viewer', user_ids: userIds},
                                                   headers: {'Content-Type': 'application/json'}});
    assert.equal(r.status, 200, r.text);
    const docs = r.json.tokens.map((token, i) => ({id: `pv${i}`, path: i % 2 ? 'viewer_state' : 'extension_viewer_state', token,
                                                   acked: undefined, pending: undefined}));
    let acks = 0, killNow;
    const killSignal = new Promise((res) => { killNow = res; });
    const conns = await Promise.all(Array.from({length: CONNS}, () => RawConnection.open(p.port)));
    const loops = conns.map(async (c, ci) => {
      const mine = docs.slice(ci * PER_CONN, (ci + 1) * PER_CONN);
      for (let batch = 0; ; batch++) {
        const values = mine.map((d) => ({doc: d.id, batch, conn: ci, pad: 'y'.repeat((batch * 13 + ci) % 200)}));
        mine.forEach((d, i) => { d.pending = values[i]; });
        await c.write(Buffer.concat(mine.map((d, i) => Buffer.from(rawRequestText('POST', `/v1/e/${d.path}`, {
          headers: {Authorization: `${CLIENT_ID} ${d.token}`}, body: JSON.stringify(values[i])})))));
        for (let i = 0; i < mine.length; i++) {
          let res;
          try { res = await c.readResponse({timeout: 5000}); } catch { return; }  // killed
          assert.equal(res.status, 200, res.text);
          mine[i].acked = values[i];
          mine[i].pending = undefined;
          if (++acks === 3000) killNow();
        }
      }
    });
    let timer;
    await Promise.race([killSignal, new Promise((res) => { timer = setTimeout(res, 20000); })]);
    clearTimeout(timer);
    await p.kill9();
    await Promise.all(loops);
    for (const c of conns) c.close();
    assert.ok(acks >= 3000, `acknowledged ${acks}`);

    const again = await start({dataDir: p.dataDir, store: 'rocksdb'});
    const got = await readAll(again.base, docs);
    let landed = 0;
    const lost = [];
    docs.forEach((d, i) => {
      if (JSON.stringify(got[i]) === JSON.stringify(d.acked ?? {})) return;
      if (d.pending && JSON.stringify(got[i]) === JSON.stringify(d.pending)) { landed++; return; }
      lost.push({doc: d.id, expected: d.acked, pending: d.pending, got: got[i]});
    });
    t.diagnostic(`${acks} pipelined acks before the kill; ${docs.filter((d) => d.pending).length} unanswered, ${landed} of those landed`);
    assert.deepEqual(lost.slice(0, 5), [], `${lost.length} documents lost acknowledged writes`);
    await again.stop();
    p.cleanup();
  });

  it('a graceful restart keeps data (all stores, config included)', async () => {
    const g = await start({store: 'rocksdb'});
    try {
      const v = await g.sandboxToken({role: 'viewer', channel_id: 'gr', user_id: 'gv'});
      const b = await g.sandboxToken({role: 'broadcaster', channel_id: 'gr'});
      const a = await g.sandboxToken({role: 'admin', channel_id: 'gr', user_id: 'ga'});
      const writes = [
        [v, 'POST', 'viewer_state', {v: 1}], [v, 'POST', 'extension_viewer_state', {ev: 1}],
        [b, 'POST', 'channel_state', {c: 1}], [b, 'PATCH', 'channel_state', [{op: 'add', path: '/p', value: [1, 2]}]],
        [a, 'POST', 'extension_state', {e: 1}], [a, 'POST', 'extension_hidden_state', {h: 1}],
        [b, 'POST', 'config/channel', {cc: 1}], [a, 'POST', 'config/extension', {ec: 1}],
      ];
      for (const [t, m, p, body] of writes) {
        const r = await g.request(m, p, {token: t, body});
        assert.equal(r.status, 200, `${m} ${p}: ${r.text}`);
      }
      assert.deepEqual(await g.stop(), {code: 0, signal: null});
      const h = await start({dataDir: g.dataDir, store: 'rocksdb'});
      const expect = [
        [v, 'viewer_state', {v: 1}], [v, 'extension_viewer_state', {ev: 1}], [v, 'channel_state', {c: 1, p: [1, 2]}],
        [v, 'extension_state', {e: 1}], [a, 'extension_hidden_state', {h: 1}], [v, 'config/channel', {cc: 1}],
        [v, 'config/extension', {ec: 1}],
      ];
      for (const [t, p, body] of expect) {
        const r = await h.request('GET', p, {token: t});
        assert.equal(r.status, 200, `${p}: ${r.text}`);
        assert.deepEqual(r.json, body, p);
      }
      assert.deepEqual(await h.stop(), {code: 0, signal: null});
    } finally {
      g.cleanup();
    }
  });
});
