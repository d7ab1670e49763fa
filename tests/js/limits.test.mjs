// Limits (spec 5.3.2, 9, 12.30): every limit is refused with a JSON {"reason"} error and the
// stored data is unchanged afterwards (read back after every refusal).
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer, CLIENT_ID, RawConnection} from './lib/server.mjs';

const KiB = 1024, MiB = 1024 * 1024;

function assertJsonError(r, status, what = '') {
  assert.equal(r.status, status, `${what}: status (body ${r.text?.slice(0, 300)})`);
  const ct = r.headers.get ? r.headers.get('content-type') : r.headers['content-type'];
  assert.match(ct || '', /^application\/json\b/, `${what}: content-type`);
  assert.ok(r.json && typeof r.json.reason === 'string' && r.json.reason.length > 0, `${what}: {"reason"} body, got ${r.text?.slice(0, 300)}`);
}

// A JSON object whose serialization is exactly n bytes: {"x":"aaa..."} (n >= 8).
function docOfSize(n, key = 'x') {
  const overhead = JSON.stringify({[key]: ''}).length;
  const d = {[key]: 'a'.repeat(n - overhead)};
  assert.equal(JSON.stringify(d).length, n);
  return d;
}

// n nested objects: nest(1) = {"a":1}, nest(2) = {"a":{"a":1}}.
function nest(n) { let v = 1; for (let i = 0; i < n; i++) v = {a: v}; return v; }

describe('limits', () => {
  let srv, viewer, broadcaster, admin;
  // The current stored value of each document; checked after every refused write.
  const stored = {};
  const docs = {
    viewer_state: () => viewer,
    channel_state: () => broadcaster,
    extension_viewer_state: () => viewer,
    'config/channel': () => broadcaster,
    'config/extension': () => admin,
    extension_state: () => admin,
    extension_hidden_state: () => admin,
  };

  async function read(path) {
    const r = await srv.request('GET', path, {token: docs[path]()});
    assert.equal(r.status, 200, `GET ${path}: ${r.text}`);
    return r.json;
  }
  async function write(method, path, body, opts = {}) {
    return srv.request(method, path, {token: docs[path](), rawBody: typeof body === 'string' ? body : JSON.stringify(body), ...opts});
  }
  async function set(path, value) {
    const r = await write('POST', path, value);
    assert.equal(r.status, 200, `POST ${path}: ${r.text?.slice(0, 300)}`);
    stored[path] = value;
  }
  async function assertUnchanged(...paths) {
    for (const p of (paths.length ? paths : Object.keys(stored))) {
      assert.deepEqual(await read(p), stored[p], `${p} changed after a refused write`);
    }
  }

  before(async () => {
    srv = await startServer();
    viewer = await srv.sandboxToken({role: 'viewer', channel_id: 'L1', user_id: 'v1'});
    broadcaster = await srv.sandboxToken({role: 'broadcaster', channel_id: 'L1'});
    admin = await srv.sandboxToken({role: 'admin', channel_id: 'L1', user_id: 'ladm'});
    for (const p of Object.keys(docs)) await set(p, {seed: p});
  });
  after(async () => { if (srv) { await srv.stop(); srv.cleanup(); } });

  describe('HTTP framing', () => {
    it('body over 1 MiB -> 413 JSON, data unchanged', async () => {
      const big = JSON.stringify(docOfSize(MiB + 1));
      assertJsonError(await write('POST', 'viewer_state', big), 413, 'viewer_state 1 MiB + 1');
      assertJsonError(await write('POST', 'config/channel', big), 413, 'config 1 MiB + 1');
      assertJsonError(await write('PATCH', 'channel_state', JSON.stringify(docOfSize(2 * MiB))), 413, 'patch 2 MiB');
      await assertUnchanged();
    });

    it('body of exactly 1 MiB passes the HTTP limit (then hits the document limit)', async () => {
      const r = await write('POST', 'viewer_state', JSON.stringify(docOfSize(MiB)));
      assertJsonError(r, 400, 'exactly 1 MiB');
      assert.equal(r.json.reason, 'document too large');
      await assertUnchanged('viewer_state');
    });

    it('chunked body over 1 MiB -> 413 JSON, data unchanged', async () => {
      const c = await RawConnection.open(srv.port);
      try {
        c.write(`POST /v1/e/viewer_state HTTP/1.1\r\nHost: x\r\nAuthorization: ${CLIENT_ID} ${viewer}\r\nTransfer-Encoding: chunked\r\n\r\n`);
        const chunk = 'a'.repeat(64 * KiB);
        let body = '{"x":"';
        for (let i = 0; i < 17; i++) body += chunk;
        body += '"}';
        // Send in 64 KiB chunks; the server may answer and close before all are written.
        for (let i = 0; i < body.length && !c.ended; i += 64 * KiB) {
          const part = body.slice(i, i + 64 * KiB);
          c.write(`${part.length.toString(16)}\r\n${part}\r\n`);
        }
        c.write('0\r\n\r\n');
        const r = await c.readResponse();
        assertJsonError(r, 413, 'chunked');
      } finally { c.close(); }
      await assertUnchanged('viewer_state');
    });

    it('header over 16 KiB -> 431 JSON, data unchanged; 15 KiB works', async () => {
      const r = await write('POST', 'viewer_state', {changed: true}, {headers: {'X-Pad': 'p'.repeat(17 * KiB)}});
      assertJsonError(r, 431, '17 KiB header');
      const r2 = await write('POST', 'viewer_state', {changed: true}, {headers: {'X-A': 'p'.repeat(9 * KiB), 'X-B': 'q'.repeat(9 * KiB)}});
      assertJsonError(r2, 431, 'two 9 KiB headers');
      await assertUnchanged();
      const ok = await srv.request('GET', 'viewer_state', {token: viewer, headers: {'X-Pad': 'p'.repeat(15 * KiB)}});
      assert.equal(ok.status, 200);
    });
  });

  describe('JSON nesting', () => {
    it('nesting deeper than 64 -> 400 mentioning nesting; 64 is fine', async () => {
      for (const p of ['viewer_state', 'channel_state', 'config/channel']) {
        const r = await write('POST', p, JSON.stringify(nest(65)));
        assertJsonError(r, 400, `${p} depth 65`);
        assert.match(r.json.reason, /nest/i);
        const arr = '{"a":' + '['.repeat(200) + ']'.repeat(200) + '}';
        const r2 = await write('POST', p, arr);
        assertJsonError(r2, 400, `${p} depth 201 arrays`);
        assert.match(r2.json.reason, /nest/i);
      }
      // Very deep input must not crash the server either.
      const r3 = await write('POST', 'viewer_state', '['.repeat(100000));
      assertJsonError(r3, 400, 'depth 100000');
      await assertUnchanged();
      await set('viewer_state', nest(64));
      await set('viewer_state', {seed: 'viewer_state'});
    });

    it('a stored document nested 33..64 deep (accepted by POST) can still be patched', async () => {
      for (const depth of [32, 33, 48, 63]) {
        await set('viewer_state', nest(depth));
        const r = await write('PATCH', 'viewer_state', {x: depth});
        assert.equal(r.status, 200, `PATCH on a depth-${depth} document: ${r.text}`);
        assert.deepEqual(await read('viewer_state'), {...nest(depth), x: depth});
        const r2 = await write('PATCH', 'viewer_state', [{op: 'add', path: '/y', value: depth}]);
        assert.equal(r2.status, 200, `JSON Patch on a depth-${depth} document: ${r2.text}`);
      }
      await set('viewer_state', {seed: 'viewer_state'});
    });

    it('a patch that makes the document deeper than 64 -> 400, unchanged', async () => {
      // Stored depth 31 (parsable by any reader), patch body depth 42, result depth 71.
      await set('channel_state', {d: nest(30)});
      const path = '/d' + '/a'.repeat(29) + '/b';
      const r = await write('PATCH', 'channel_state', [{op: 'add', path, value: nest(40)}]);
      assertJsonError(r, 400, 'deep patch');
      assert.match(r.json.reason, /nest/i);
      await assertUnchanged('channel_state');
      // Boundary: the result depth 31 + 34 = 65 is refused, 31 + 33 = 64 is fine.
      const r2 = await write('PATCH', 'channel_state', [{op: 'add', path, value: nest(34)}]);
      assertJsonError(r2, 400, 'result depth 65');
      await assertUnchanged('channel_state');
      const r3 = await write('PATCH', 'channel_state', [{op: 'add', path, value: nest(33)}]);
      assert.equal(r3.status, 200, `result depth 64: ${r3.text}`);
      await set('channel_state', {seed: 'channel_state'});
    });
  });

  describe('document sizes', () => {
    it('state document over 16 KiB -> 400 "document too large"; exactly 16 KiB is fine', async () => {
      for (const p of ['viewer_state', 'channel_state', 'extension_viewer_state', 'extension_state', 'extension_hidden_state']) {
        const r = await write('POST', p, docOfSize(16 * KiB + 1));
        assertJsonError(r, 400, `${p} 16 KiB + 1`);
        assert.equal(r.json.reason, 'document too large');
        const r2 = await write('POST', p, docOfSize(100 * KiB));
        assertJsonError(r2, 400, `${p} 100 KiB`);
        assert.equal(r2.json.reason, 'document too large');
        await assertUnchanged(p);
        await set(p, docOfSize(16 * KiB));
        await set(p, {seed: p});
      }
    });

    it('channel and extension config up to 64 KiB accepted, over -> 400, unchanged', async () => {
      for (const p of ['config/channel', 'config/extension']) {
        await set(p, docOfSize(64 * KiB));
        const r = await write('POST', p, docOfSize(64 * KiB + 1));
        assertJsonError(r, 400, `${p} 64 KiB + 1`);
        assert.equal(r.json.reason, 'document too large');
        await assertUnchanged(p);
        const r2 = await write('PATCH', p, {y: 'b'});
        assertJsonError(r2, 400, `${p} patch past 64 KiB`);
        await assertUnchanged(p);
        await set(p, {seed: p});
      }
      // Config cap is larger than the state cap: 32 KiB config is fine.
      await set('config/channel', docOfSize(32 * KiB));
      await set('config/channel', {seed: 'config/channel'});
    });

    it('PATCH that would grow a state doc past 16 KiB -> 400, doc unchanged', async () => {
      for (const p of ['viewer_state', 'channel_state', 'extension_viewer_state']) {
        await set(p, docOfSize(16 * KiB - 10));
        const merge = await write('PATCH', p, {more: 'b'.repeat(20)});
        assertJsonError(merge, 400, `${p} merge`);
        assert.equal(merge.json.reason, 'document too large');
        await assertUnchanged(p);
        const jp = await write('PATCH', p, [{op: 'add', path: '/more', value: 'b'.repeat(20)}]);
        assertJsonError(jp, 400, `${p} json patch`);
        assert.equal(jp.json.reason, 'document too large');
        await assertUnchanged(p);
        // A patch that shrinks it is fine.
        const shrink = await write('PATCH', p, [{op: 'replace', path: '/x', value: 'small'}]);
        assert.equal(shrink.status, 200, shrink.text);
        stored[p] = {x: 'small'};
        await assertUnchanged(p);
        await set(p, {seed: p});
      }
    });
  });

  describe('batch limits', () => {
    it('extension_viewer_state?user_ids= with 1001 ids -> 400 "Too many ids specified"; 1000 ok', async () => {
      const ids = Array.from({length: 999}, (_, i) => `bid${i}`);
      const ok = await srv.request('GET', `extension_viewer_state?user_ids=${[...ids, 'v1'].join(',')}`, {token: admin});
      assert.equal(ok.status, 200, ok.text);
      assert.deepEqual(ok.json, {v1: stored.extension_viewer_state});
      const tooMany = await srv.request('GET', `extension_viewer_state?user_ids=${[...ids, 'v1', 'one-more'].join(',')}`, {token: admin});
      assertJsonError(tooMany, 400, '1001 ids');
      assert.equal(tooMany.json.reason, 'Too many ids specified');
    });

    it('PATCH extension_viewer_state map with 1001 users -> 400, nothing written; 1000 ok', async () => {
      const map = {v1: {touched: true}};
      for (let i = 0; i < 1000; i++) map[`mu${i}`] = {n: i};
      const r = await write('PATCH', 'extension_viewer_state', map, {token: admin});
      assertJsonError(r, 400, '1001 users');
      assert.equal(r.json.reason, 'Too many ids specified');
      await assertUnchanged();
      const none = await srv.request('GET', 'extension_viewer_state?user_ids=mu0,mu500,mu999', {token: admin});
      assert.deepEqual(none.json, {}, 'no user of the refused map got state');

      delete map.mu999;
      const ok = await write('PATCH', 'extension_viewer_state', map, {token: admin});
      assert.equal(ok.status, 200, ok.text);
      const some = await srv.request('GET', 'extension_viewer_state?user_ids=mu0,mu500,mu998,mu999,v1', {token: admin});
      assert.deepEqual(some.json, {mu0: {n: 0}, mu500: {n: 500}, mu998: {n: 998}, v1: {...stored.extension_viewer_state, touched: true}});
      stored.extension_viewer_state = {...stored.extension_viewer_state, touched: true};
      await assertUnchanged();
    });

    it('user map with one bad entry -> 400 and no entry applied', async () => {
      const map = {v1: {bad: 'no'}, good1: {g: 1}, broken: 42};
      const r = await write('PATCH', 'extension_viewer_state', map, {token: admin});
      assertJsonError(r, 400, 'bad entry');
      const map2 = {v1: {bad: 'no'}, good2: [{op: 'test', path: '/nope', value: 1}]};
      assertJsonError(await write('PATCH', 'extension_viewer_state', map2, {token: admin}), 400, 'failing entry');
      const check = await srv.request('GET', 'extension_viewer_state?user_ids=good1,good2,v1', {token: admin});
      assert.deepEqual(check.json, {v1: stored.extension_viewer_state});
      await assertUnchanged();
    });
  });

  describe('malformed bodies', () => {
    it('non-object POST body (array, string, number, ...) -> 400 "Malformed input body"', async () => {
      for (const p of ['viewer_state', 'channel_state', 'extension_viewer_state', 'config/channel', 'extension_state']) {
        for (const body of ['[1,2]', '[]', '"just a string"', '42', '-1.5', 'true', 'null', JSON.stringify(JSON.stringify([1]))]) {
          const r = await write('POST', p, body);
          assertJsonError(r, 400, `${p} ${body}`);
          assert.equal(r.json.reason, 'Malformed input body', `${p} ${body}`);
        }
      }
      await assertUnchanged();
    });

    it('empty body on POST and PATCH -> 400', async () => {
      for (const p of ['viewer_state', 'channel_state', 'config/channel']) {
        for (const m of ['POST', 'PATCH']) {
          assertJsonError(await write(m, p, ''), 400, `${m} ${p} empty`);
          assertJsonError(await write(m, p, '  \r\n\t '), 400, `${m} ${p} whitespace`);
          const none = await srv.request(m, p, {token: docs[p]()});
          assertJsonError(none, 400, `${m} ${p} no body at all`);
        }
      }
      await assertUnchanged();
    });

    it('malformed JSON -> 400 "Malformed json body"', async () => {
      for (const body of ['{"a":', '{a:1}', '{"a":1}garbage', "{'a':1}", '{"a":1,}', '{"a":01}', '{"a":"\\x"}', '\u0000', '"{\\"a\\":1']) {
        for (const [m, p] of [['POST', 'viewer_state'], ['PATCH', 'channel_state'], ['POST', 'config/channel']]) {
          const r = await write(m, p, body);
          assertJsonError(r, 400, `${m} ${p} ${JSON.stringify(body)}`);
          if (body !== '"{\\"a\\":1') assert.equal(r.json.reason, 'Malformed json body', `${m} ${p} ${JSON.stringify(body)}`);
        }
      }
      await assertUnchanged();
    });

    it('malformed patches -> 400 and the document unchanged', async () => {
      await set('viewer_state', {seed: 'viewer_state', list: [1, 2, 3], obj: {k: 'v'}});
      const bad = {
        'op missing': [{path: '/a', value: 1}],
        'unknown op': [{op: 'frobnicate', path: '/a', value: 1}],
        'op not a string': [{op: 7, path: '/a', value: 1}],
        'path missing': [{op: 'add', value: 1}],
        'pointer without leading slash': [{op: 'add', path: 'a', value: 1}],
        'bad escape in pointer': [{op: 'add', path: '/~2', value: 1}],
        'missing parent': [{op: 'replace', path: '/missing/deep', value: 1}],
        'remove of a missing key': [{op: 'remove', path: '/nope'}],
        'array index out of range': [{op: 'replace', path: '/list/9', value: 1}],
        'non-numeric array index': [{op: 'add', path: '/list/x', value: 1}],
        'move without from': [{op: 'move', path: '/z'}],
        'add without value': [{op: 'add', path: '/z'}],
        'element not an object': ['add'],
        'root replaced by an array': [{op: 'replace', path: '', value: [1]}],
        'failing test in the middle': [{op: 'add', path: '/x', value: 1}, {op: 'replace', path: '/seed', value: 'changed'},
                                       {op: 'test', path: '/seed', value: 'WRONG'}, {op: 'add', path: '/y', value: 2}],
        'failing op at the end': [{op: 'add', path: '/x', value: 1}, {op: 'remove', path: '/list/0'}, {op: 'remove', path: '/absent'}],
      };
      for (const [name, patch] of Object.entries(bad)) {
        for (const p of ['viewer_state']) {
          const r = await write('PATCH', p, patch);
          assertJsonError(r, 400, name);
          await assertUnchanged(p);
        }
      }
      // The same multi-op patch with a passing test applies completely.
      const good = await write('PATCH', 'viewer_state', [{op: 'add', path: '/x', value: 1}, {op: 'test', path: '/seed', value: 'viewer_state'},
                                                         {op: 'remove', path: '/list/0'}, {op: 'add', path: '/y', value: 2}]);
      assert.equal(good.status, 200, good.text);
      stored.viewer_state = {seed: 'viewer_state', list: [2, 3], obj: {k: 'v'}, x: 1, y: 2};
      await assertUnchanged();
      // Malformed patches on other stores too.
      for (const p of ['channel_state', 'config/channel', 'extension_state', 'extension_hidden_state']) {
        for (const patch of [bad['unknown op'], bad['failing test in the middle'], bad['pointer without leading slash']]) {
          assertJsonError(await write('PATCH', p, patch), 400, `${p} bad patch`);
        }
      }
      await assertUnchanged();
    });
  });

  describe('configurable limits', () => {
    let small;
    before(async () => { small = await startServer({config: {limits: {state_bytes: 100}}}); });
    after(async () => { if (small) { await small.stop(); small.cleanup(); } });

    it('state_bytes 100: a 200-byte doc is refused, 50 bytes works, config keeps its own cap', async () => {
      const t = await small.sandboxToken({role: 'broadcaster', channel_id: 'S1'});
      const ok = await small.request('POST', 'channel_state', {token: t, body: docOfSize(50)});
      assert.equal(ok.status, 200, ok.text);
      const r = await small.request('POST', 'channel_state', {token: t, body: docOfSize(200)});
      assertJsonError(r, 400, '200 bytes');
      assert.equal(r.json.reason, 'document too large');
      assert.deepEqual((await small.request('GET', 'channel_state', {token: t})).json, docOfSize(50));
      const at = await small.request('POST', 'channel_state', {token: t, body: docOfSize(100)});
      assert.equal(at.status, 200, at.text);
      const over = await small.request('PATCH', 'channel_state', {token: t, body: {z: 1}});
      assertJsonError(over, 400, 'patch past 100');
      assert.deepEqual((await small.request('GET', 'channel_state', {token: t})).json, docOfSize(100));
      const cfg = await small.request('POST', 'config/channel', {token: t, body: docOfSize(2000)});
      assert.equal(cfg.status, 200, cfg.text);
    });
  });

  describe('state expiry', () => {
    let ttl;
    before(async () => { ttl = await startServer({config: {state_ttl_seconds: 2}}); });
    after(async () => { if (ttl) { await ttl.stop(); ttl.cleanup(); } });

    it('state reads as {} after the TTL; config does not expire', async () => {
      const v = await ttl.sandboxToken({role: 'viewer', channel_id: 'T1', user_id: 'tv'});
      const b = await ttl.sandboxToken({role: 'broadcaster', channel_id: 'T1'});
      const a = await ttl.sandboxToken({role: 'admin', channel_id: 'T1', user_id: 'ta'});
      const writes = [
        [v, 'viewer_state', {vs: 1}], [v, 'extension_viewer_state', {evs: 1}], [b, 'channel_state', {cs: 1}],
        [a, 'extension_state', {es: 1}], [b, 'config/channel', {cc: 1}], [a, 'config/extension', {ec: 1}],
      ];
      for (const [t, p, body] of writes) {
        const r = await ttl.request('POST', p, {token: t, body});
        assert.equal(r.status, 200, `${p}: ${r.text}`);
      }
      for (const [t, p, body] of writes) assert.deepEqual((await ttl.request('GET', p, {token: t})).json, body, p);
      assert.deepEqual((await ttl.request('GET', 'all_state', {token: v})).json,
                       {extension: {es: 1}, channel: {cs: 1}, viewer: {vs: 1}, extension_viewer: {evs: 1}});
      await new Promise((r) => setTimeout(r, 3200));
      for (const [t, p, body] of writes) {
        const got = (await ttl.request('GET', p, {token: t})).json;
        if (p.startsWith('config/')) assert.deepEqual(got, body, `${p} must not expire`);
        else assert.deepEqual(got, {}, `${p} should have expired`);
      }
      assert.deepEqual((await ttl.request('GET', 'all_state', {token: v})).json,
                       {extension: {}, channel: {}, viewer: {}, extension_viewer: {}});
      assert.deepEqual((await ttl.request('GET', 'config', {token: v})).json, {channel: {cc: 1}, extension: {ec: 1}});
      const multi = await ttl.request('GET', 'extension_viewer_state?user_ids=tv', {token: a});
      assert.deepEqual(multi.json, {});
      // A patch on an expired document starts from {}.
      const p = await ttl.request('PATCH', 'channel_state', {token: b, body: {fresh: true}});
      assert.equal(p.status, 200);
      assert.deepEqual((await ttl.request('GET', 'channel_state', {token: b})).json, {fresh: true});
    });
  });
});
