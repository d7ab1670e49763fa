// HTTP behaviour of the server (spec 3, 5.1): content types, CORS, keep-alive, pipelining,
// body parsing regardless of Content-Type, query decoding, error shapes, ops endpoints,
// Expect: 100-continue, malformed input, graceful shutdown, user_info and authtoken.
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer, CLIENT_ID, RawConnection, rawRequest, rawRequestText, decodeJwt} from './lib/server.mjs';

const JSON_CT = /^application\/json\b/i;

function assertJsonError(r, status, what = '') {
  assert.equal(r.status, status, `${what}: status (body ${r.text})`);
  const ct = r.headers.get ? r.headers.get('content-type') : r.headers['content-type'];
  assert.match(ct || '', JSON_CT, `${what}: content-type of a ${status}`);
  assert.ok(r.json && typeof r.json === 'object' && !Array.isArray(r.json), `${what}: JSON object body, got ${r.text}`);
  assert.equal(typeof r.json.reason, 'string', `${what}: reason is a string: ${r.text}`);
  assert.ok(r.json.reason.length > 0, `${what}: reason not empty`);
  for (const k of Object.keys(r.json)) assert.ok(k === 'reason' || k === 'info', `${what}: unexpected key ${k} in ${r.text}`);
  if ('info' in r.json) assert.equal(typeof r.json.info, 'string');
}

async function authtoken(srv, body, query = '', contentType = 'application/json') {
  return srv.request('POST', 'authtoken' + query, {rawBody: JSON.stringify(body), headers: {'Content-Type': contentType}});
}

describe('http conventions', () => {
  let srv, viewer, viewerB, admin, broadcaster;

  before(async () => {
    srv = await startServer();
    viewer = await srv.sandboxToken({role: 'viewer', channel_id: 'ch1', user_id: 'v1'});
    viewerB = await srv.sandboxToken({role: 'viewer', channel_id: 'ch1', user_id: 'v2'});
    admin = await srv.sandboxToken({role: 'admin', channel_id: 'ch1', user_id: 'adm'});
    broadcaster = await srv.sandboxToken({role: 'broadcaster', channel_id: 'ch1'});
  });
  after(async () => {
    if (srv) { await srv.stop(); srv.cleanup(); }
  });

  describe('content type and CORS on every response', () => {
    it('successful JSON responses carry application/json and Access-Control-Allow-Origin', async () => {
      const cases = [
        ['GET', 'user_info', {token: viewer}],
        ['GET', 'channel_state', {token: viewer}],
        ['GET', 'all_state', {token: viewer}],
        ['POST', 'viewer_state', {token: viewer, body: {a: 1}}],
        ['GET', '/healthz', {}],
        ['POST', 'authtoken', {body: {app_id: CLIENT_ID, channel_id: '1', role: 'viewer'}}],
      ];
      for (const [m, p, o] of cases) {
        const r = await srv.request(m, p, o);
        assert.equal(r.status, 200, `${m} ${p}: ${r.text}`);
        assert.match(r.headers.get('content-type') || '', JSON_CT, `${m} ${p}`);
        assert.ok(r.headers.get('access-control-allow-origin'), `${m} ${p}: ACAO missing`);
        assert.doesNotThrow(() => JSON.parse(r.text), `${m} ${p}: body is JSON`);
      }
    });

    it('error responses carry application/json, Access-Control-Allow-Origin and {"reason"}', async () => {
      const cases = [
        ['GET', 'channel_state', {}, 401],
        ['GET', 'channel_state', {token: 'not.a.token'}, 401],
        ['GET', 'nope', {token: viewer}, 404],
        ['DELETE', 'channel_state', {token: viewer}, 405],
        ['POST', 'channel_state', {token: viewer, body: {a: 1}}, 403],
        ['POST', 'viewer_state', {token: viewer, rawBody: '{bad'}, 400],
      ];
      for (const [m, p, o, status] of cases) {
        const r = await srv.request(m, p, o);
        assertJsonError(r, status, `${m} ${p}`);
        assert.ok(r.headers.get('access-control-allow-origin'), `${m} ${p}: ACAO missing`);
      }
    });

    it('metrics is text/plain but still carries Access-Control-Allow-Origin', async () => {
      const r = await srv.request('GET', '/metrics');
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') || '', /^text\/plain\b/);
      assert.ok(r.headers.get('access-control-allow-origin'));
    });
  });

  describe('CORS preflight', () => {
    for (const p of ['/v1/e/channel_state', '/v1/e/anything', '/v1/e/authtoken', '/healthz', '/not/a/route']) {
      it(`OPTIONS ${p} -> 204 with allow headers`, async () => {
        const res = await fetch(srv.base + p, {
          method: 'OPTIONS',
          headers: {
            'Origin': 'https://abc.ext-twitch.tv',
            'Access-Control-Request-Method': 'POST',
            'Access-Control-Request-Headers': 'authorization, content-type',
          },
        });
        assert.equal(res.status, 204);
        assert.equal(await res.text(), '');
        const origin = res.headers.get('access-control-allow-origin');
        assert.ok(origin === '*' || origin === 'https://abc.ext-twitch.tv', `ACAO ${origin}`);
        const methods = (res.headers.get('access-control-allow-methods') || '').toUpperCase().split(/\s*,\s*/);
        for (const m of ['GET', 'POST', 'PATCH', 'DELETE', 'OPTIONS']) assert.ok(methods.includes(m), `methods ${methods}`);
        const hdrs = (res.headers.get('access-control-allow-headers') || '').toLowerCase().split(/\s*,\s*/);
        assert.ok(hdrs.includes('authorization'), `allow-headers ${hdrs}`);
        assert.ok(hdrs.includes('content-type'), `allow-headers ${hdrs}`);
      });
    }

    it('preflight needs no Authorization and does not count as a request body', async () => {
      const c = await RawConnection.open(srv.port);
      try {
        await c.write(rawRequestText('OPTIONS', '/v1/e/viewer_state') + rawRequestText('GET', '/healthz'));
        const a = await c.readResponse();
        assert.equal(a.status, 204);
        assert.equal(a.body.length, 0);
        const b = await c.readResponse();
        assert.equal(b.status, 200);
        assert.deepEqual(b.json, {status: 'ok'});
      } finally { c.close(); }
    });
  });

  describe('connections', () => {
    it('keep-alive: several sequential requests on one socket', async () => {
      const c = await RawConnection.open(srv.port);
      try {
        for (let i = 0; i < 6; i++) {
          await c.write(rawRequestText('GET', '/v1/e/user_info', {headers: {Authorization: `${CLIENT_ID} ${viewer}`}}));
          const r = await c.readResponse();
          assert.equal(r.status, 200, r.text);
          assert.equal(r.json.registered, false);
          assert.notEqual((r.headers.connection || '').toLowerCase(), 'close');
        }
        await c.write(rawRequestText('POST', '/v1/e/viewer_state', {headers: {Authorization: `${CLIENT_ID} ${viewer}`}, body: '{"k":"alive"}'}));
        assert.equal((await c.readResponse()).status, 200);
        await c.write(rawRequestText('GET', '/v1/e/viewer_state', {headers: {Authorization: `${CLIENT_ID} ${viewer}`}}));
        assert.deepEqual((await c.readResponse()).json, {k: 'alive'});
        assert.equal(c.ended, false, 'server closed a keep-alive connection');
      } finally { c.close(); }
    });

    it('Connection: close and HTTP/1.0 requests are answered, then the connection is closed', async () => {
      const c = await RawConnection.open(srv.port);
      try {
        await c.write(rawRequestText('GET', '/healthz', {headers: {Connection: 'close'}}));
        const r = await c.readResponse();
        assert.equal(r.status, 200);
        assert.deepEqual(r.json, {status: 'ok'});
        assert.ok(await c.waitClosed(3000), 'closed after Connection: close');
      } finally { c.close(); }
      const c2 = await RawConnection.open(srv.port);
      try {
        await c2.write(`GET /v1/e/user_info HTTP/1.0\r\nAuthorization: ${CLIENT_ID} ${viewer}\r\n\r\n`);
        const r = await c2.readResponse();
        assert.equal(r.status, 200);
        assert.equal(r.json.ip_address, '127.0.0.0');
        assert.ok(await c2.waitClosed(3000), 'closed after an HTTP/1.0 request');
      } finally { c2.close(); }
    });

    it('pipelining: 20 requests in one write come back in order with correct bodies', async () => {
      const auth = {Authorization: `${CLIENT_ID} ${viewerB}`};
      const reqs = [];
      const expect = [];
      for (let i = 0; i < 20; i++) {
        if (i % 3 === 0) {
          reqs.push(rawRequestText('GET', '/v1/e/user_info', {headers: auth}));
          expect.push((r) => { assert.equal(r.status, 200); assert.equal(r.json.ip_address, '127.0.0.0'); assert.ok('server_time' in r.json); });
        } else if (i % 3 === 1) {
          reqs.push(rawRequestText('POST', '/v1/e/viewer_state', {headers: {...auth, 'Content-Type': 'application/x-www-form-urlencoded; charset=UTF-8'}, body: JSON.stringify({seq: i, pad: 'x'.repeat(i * 7)})}));
          expect.push((r) => { assert.equal(r.status, 200, r.text); assert.deepEqual(r.json, {}); });
        } else {
          reqs.push(rawRequestText('GET', '/v1/e/viewer_state', {headers: auth}));
          const prev = i - 1;
          expect.push((r) => { assert.equal(r.status, 200); assert.deepEqual(r.json, {seq: prev, pad: 'x'.repeat(prev * 7)}); });
        }
      }
      const c = await RawConnection.open(srv.port);
      try {
        await c.write(Buffer.concat(reqs.map((r) => Buffer.from(r))));
        for (let i = 0; i < 20; i++) {
          const r = await c.readResponse();
          try { expect[i](r); } catch (e) { e.message = `response #${i}: ${e.message} (body ${r.text})`; throw e; }
        }
        assert.equal(c.buf.length, 0, 'no extra bytes after 20 responses');
      } finally { c.close(); }
    });

    it('malformed HTTP (garbage line) -> 400 JSON and the connection is closed', async () => {
      for (const garbage of ['THIS IS NOT HTTP\r\n\r\n', 'GET\r\n\r\n', '\x00\x01\x02 garbage\r\n\r\n',
                             'GET /healthz HTTP/1.1\r\nBad Header Line\r\n\r\n']) {
        const c = await RawConnection.open(srv.port);
        try {
          await c.write(garbage);
          const r = await c.readResponse();
          assertJsonError({status: r.status, headers: r.headers, json: r.json, text: r.text}, 400, JSON.stringify(garbage));
          assert.ok(r.headers['access-control-allow-origin']);
          assert.ok(await c.waitClosed(3000), `connection not closed after ${JSON.stringify(garbage)}`);
        } finally { c.close(); }
      }
    });

    it('Expect: 100-continue with a body', async () => {
      const c = await RawConnection.open(srv.port);
      try {
        const body = JSON.stringify({via: 'expect-continue', n: 100});
        await c.write(`POST /v1/e/viewer_state HTTP/1.1\r\nHost: x\r\nAuthorization: ${CLIENT_ID} ${viewer}\r\n` +
                      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`);
        const interim = await c.readResponse({timeout: 3000});
        assert.equal(interim.status, 100);
        assert.equal(interim.httpVersion, '1.1');
        assert.match(interim.statusText, /Continue/i);
        await c.write(body);
        const r = await c.readResponse();
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.json, {});
        await c.write(rawRequestText('GET', '/v1/e/viewer_state', {headers: {Authorization: `${CLIENT_ID} ${viewer}`}}));
        assert.deepEqual((await c.readResponse()).json, {via: 'expect-continue', n: 100});
      } finally { c.close(); }
    });
  });

  describe('request bodies', () => {
    for (const ct of ['application/x-www-form-urlencoded; charset=UTF-8', 'text/plain', 'text/plain;charset=UTF-8', 'application/json', null]) {
      it(`JSON body accepted with Content-Type ${ct ?? '(none)'}`, async () => {
        const headers = {Authorization: `${CLIENT_ID} ${viewer}`};
        if (ct) headers['Content-Type'] = ct;
        const value = {ct: ct ?? 'none', list: [1, 2, {x: null}]};
        const r = await rawRequest(srv.port, 'POST', '/v1/e/viewer_state', {headers, body: JSON.stringify(value)});
        assert.equal(r.status, 200, r.text);
        assert.match(r.headers['content-type'], JSON_CT);
        const g = await srv.request('GET', 'viewer_state', {token: viewer});
        assert.deepEqual(g.json, value);
      });
    }

    it('a JSON string literal containing JSON is parsed once more', async () => {
      const inner = JSON.stringify({a: 1, nested: {b: 'two'}});
      const r = await srv.request('POST', 'viewer_state', {token: viewer, rawBody: JSON.stringify(inner)});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual((await srv.request('GET', 'viewer_state', {token: viewer})).json, {a: 1, nested: {b: 'two'}});
      // The literal body from the spec example.
      const r2 = await srv.request('POST', 'viewer_state', {token: viewer, rawBody: '"{\\"a\\":1}"'});
      assert.equal(r2.status, 200, r2.text);
      assert.deepEqual((await srv.request('GET', 'viewer_state', {token: viewer})).json, {a: 1});
      // Also for PATCH (a double-encoded patch array).
      const r3 = await srv.request('PATCH', 'viewer_state', {token: viewer, rawBody: JSON.stringify(JSON.stringify([{op: 'add', path: '/b', value: 2}]))});
      assert.equal(r3.status, 200, r3.text);
      assert.deepEqual((await srv.request('GET', 'viewer_state', {token: viewer})).json, {a: 1, b: 2});
    });
  });

  describe('query strings', () => {
    let ids;
    before(async () => {
      ids = {a: 'qa', b: 'qb', sp: 'q x', sl: 'q/y'};
      for (const [k, u] of Object.entries(ids)) {
        const t = await srv.sandboxToken({role: 'viewer', channel_id: 'ch1', user_id: u});
        const r = await srv.request('POST', 'extension_viewer_state', {token: t, body: {who: k}});
        assert.equal(r.status, 200, r.text);
      }
    });

    it('unencoded comma-separated values (raw bytes, as MEDKit sends them)', async () => {
      const r = await rawRequest(srv.port, 'GET', '/v1/e/extension_viewer_state?user_ids=qa,qb',
                                 {headers: {Authorization: `${CLIENT_ID} ${admin}`}});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, {qa: {who: 'a'}, qb: {who: 'b'}});
    });

    it('ids without state are omitted', async () => {
      const r = await rawRequest(srv.port, 'GET', '/v1/e/extension_viewer_state?user_ids=qa,nobody,qb',
                                 {headers: {Authorization: `${CLIENT_ID} ${admin}`}});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, {qa: {who: 'a'}, qb: {who: 'b'}});
    });

    it('percent-encoded values are decoded', async () => {
      const r = await rawRequest(srv.port, 'GET', '/v1/e/extension_viewer_state?user_ids=q%20x,q%2Fy,q%61',
                                 {headers: {Authorization: `${CLIENT_ID} ${admin}`}});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, {'q x': {who: 'sp'}, 'q/y': {who: 'sl'}, qa: {who: 'a'}});
      const r2 = await rawRequest(srv.port, 'GET', '/v1/e/extension_viewer_state?user%5Fids=qb',
                                  {headers: {Authorization: `${CLIENT_ID} ${admin}`}});
      assert.deepEqual(r2.json, {qb: {who: 'b'}});
    });

    it('query string on a plain endpoint does not change the route', async () => {
      const r = await srv.request('GET', 'user_info?foo=bar&x', {token: viewer});
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.registered, false);
    });
  });

  describe('routing and errors', () => {
    it('unknown path -> 404 {"reason":"Not Found"}', async () => {
      for (const [m, p, o] of [['GET', 'does_not_exist', {token: viewer}], ['POST', 'nothing/here', {token: viewer, body: {}}],
                               ['GET', '/nope', {}], ['GET', '/v1/e/', {}], ['GET', 'authenticate', {token: viewer}],
                               ['GET', '/v2/e/user_info', {token: viewer}]]) {
        const r = await srv.request(m, p, o);
        assertJsonError(r, 404, `${m} ${p}`);
        assert.deepEqual(r.json, {reason: 'Not Found'}, `${m} ${p}`);
      }
    });

    it('wrong method on a known path -> 405 JSON', async () => {
      for (const [m, p] of [['DELETE', 'channel_state'], ['PUT', 'viewer_state'], ['POST', 'user_info'],
                            ['GET', 'authtoken'], ['POST', '/healthz'], ['DELETE', 'all_state'], ['PATCH', 'config']]) {
        const r = await srv.request(m, p, {token: viewer});
        assertJsonError(r, 405, `${m} ${p}`);
      }
    });

    it('GET /healthz -> 200 {"status":"ok"}', async () => {
      const r = await srv.request('GET', '/healthz');
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), JSON_CT);
      assert.deepEqual(r.json, {status: 'ok'});
    });

    it('HEAD behaves like GET without a body', async () => {
      const c = await RawConnection.open(srv.port);
      try {
        const auth = {Authorization: `${CLIENT_ID} ${viewer}`};
        await c.write(rawRequestText('HEAD', '/healthz'));
        const h = await c.readResponse({head: true});
        assert.equal(h.status, 200);
        assert.match(h.headers['content-type'], JSON_CT);
        assert.ok(h.headers['access-control-allow-origin']);
        // No body bytes may follow: the next response on the same socket must parse cleanly.
        await c.write(rawRequestText('GET', '/healthz'));
        const g = await c.readResponse();
        assert.equal(g.status, 200);
        assert.deepEqual(g.json, {status: 'ok'});
        if (h.headers['content-length'] !== undefined) assert.equal(Number(h.headers['content-length']), g.body.length);

        await c.write(rawRequestText('HEAD', '/v1/e/channel_state', {headers: auth}));
        const h2 = await c.readResponse({head: true});
        assert.equal(h2.status, 200);
        await c.write(rawRequestText('HEAD', '/v1/e/channel_state'));
        const h3 = await c.readResponse({head: true});
        assert.equal(h3.status, 401);
        await c.write(rawRequestText('HEAD', '/v1/e/no_such_thing', {headers: auth}));
        const h4 = await c.readResponse({head: true});
        assert.equal(h4.status, 404);
        await c.write(rawRequestText('GET', '/v1/e/user_info', {headers: auth}));
        const g2 = await c.readResponse();
        assert.equal(g2.status, 200);
        assert.equal(g2.json.registered, false);
        assert.equal(c.buf.length, 0);
      } finally { c.close(); }
      const viaFetch = await fetch(srv.base + '/healthz', {method: 'HEAD'});
      assert.equal(viaFetch.status, 200);
      assert.equal(await viaFetch.text(), '');
    });
  });

  describe('user_info', () => {
    it('returns the masked ip, registered false, empty visualization id and server time', async () => {
      const before = Date.now();
      const r = await srv.request('GET', 'user_info', {token: viewer});
      const afterT = Date.now();
      assert.equal(r.status, 200);
      assert.equal(r.json.ip_address, '127.0.0.0');
      assert.equal(r.json.registered, false);
      assert.equal(r.json.visualization_id, '');
      assert.equal(typeof r.json.server_time, 'number');
      assert.ok(Number.isInteger(r.json.server_time));
      assert.ok(r.json.server_time >= before - 3000 && r.json.server_time <= afterT + 3000,
                `server_time ${r.json.server_time} vs now ${before}..${afterT}`);
      assert.deepEqual(Object.keys(r.json).sort(), ['ip_address', 'registered', 'server_time', 'visualization_id']);
    });

    it('works for every role and refuses missing auth', async () => {
      for (const t of [viewer, admin, broadcaster]) {
        assert.equal((await srv.request('GET', 'user_info', {token: t})).status, 200);
      }
      assertJsonError(await srv.request('GET', 'user_info'), 401, 'no auth');
    });
  });

  describe('authtoken', () => {
    const now = () => Math.floor(Date.now() / 1000);

    function checkCommonClaims(tok, {role, channel_id}) {
      const {header, payload} = decodeJwt(tok);
      assert.equal(header.alg, 'HS256');
      assert.equal(payload.allowed_stage, 'sandbox');
      assert.equal(typeof payload.exp, 'number');
      assert.ok(payload.exp > now() + 86400, `exp ${payload.exp} should be more than a day ahead`);
      assert.equal(payload.role, role);
      assert.equal(payload.channel_id, channel_id);
      return payload;
    }

    it('accepts app_id (MEDKit body) and the token works', async () => {
      const r = await authtoken(srv, {app_id: CLIENT_ID, channel_id: '12345', role: 'viewer', user_id: '23456'}, '?role=viewer');
      assert.equal(r.status, 200, r.text);
      assert.match(r.headers.get('content-type'), JSON_CT);
      assert.deepEqual(Object.keys(r.json), ['token']);
      const p = checkCommonClaims(r.json.token, {role: 'viewer', channel_id: '12345'});
      assert.equal(p.user_id, '23456');
      assert.equal((await srv.request('GET', 'user_info', {token: r.json.token})).status, 200);
    });

    it('accepts extension_id (documented body)', async () => {
      const r = await authtoken(srv, {extension_id: 'otherext', channel_id: '5', role: 'admin', user_id: '7'});
      assert.equal(r.status, 200, r.text);
      const p = checkCommonClaims(r.json.token, {role: 'admin', channel_id: '5'});
      assert.equal(p.user_id, '7');
      assert.equal((await srv.request('GET', 'user_info', {token: r.json.token, clientId: 'otherext'})).status, 200);
    });

    it('also accepts the MEDKit content type', async () => {
      const r = await authtoken(srv, {app_id: CLIENT_ID, channel_id: '1', role: 'viewer', user_id: '2'}, '', 'application/x-www-form-urlencoded; charset=UTF-8');
      assert.equal(r.status, 200, r.text);
    });

    it('takes the role from ?role= when the body lacks it, body role wins otherwise', async () => {
      const r = await authtoken(srv, {app_id: CLIENT_ID, channel_id: '888', user_id: '9'}, '?role=admin');
      assert.equal(r.status, 200, r.text);
      checkCommonClaims(r.json.token, {role: 'admin', channel_id: '888'});
      const r2 = await authtoken(srv, {app_id: CLIENT_ID, channel_id: '888', user_id: '9', role: 'viewer'}, '?role=admin');
      checkCommonClaims(r2.json.token, {role: 'viewer', channel_id: '888'});
    });

    it('broadcaster forces user_id = channel_id', async () => {
      const r = await authtoken(srv, {app_id: CLIENT_ID, channel_id: '4242', role: 'broadcaster', user_id: '99'});
      assert.equal(r.status, 200, r.text);
      const p = checkCommonClaims(r.json.token, {role: 'broadcaster', channel_id: '4242'});
      assert.equal(p.user_id, '4242');
      const r2 = await authtoken(srv, {app_id: CLIENT_ID, channel_id: '4243'}, '?role=broadcaster');
      const p2 = checkCommonClaims(r2.json.token, {role: 'broadcaster', channel_id: '4243'});
      assert.equal(p2.user_id, '4243');
    });

    it('user_id + user_ids -> {"tokens": [...]} in order', async () => {
      const userIds = ['u3', 'u1', 'u2', 'u10'];
      const r = await authtoken(srv, {app_id: CLIENT_ID, channel_id: '77', role: 'viewer', user_id: 'u0', user_ids: userIds});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(Object.keys(r.json), ['tokens']);
      assert.equal(r.json.tokens.length, 5);
      const users = r.json.tokens.map((t) => checkCommonClaims(t, {role: 'viewer', channel_id: '77'}).user_id);
      assert.deepEqual(users.filter((u) => u !== 'u0'), userIds, 'user_ids tokens in order');
      assert.ok(users.includes('u0'));
      const only = await authtoken(srv, {app_id: CLIENT_ID, channel_id: '77', role: 'viewer', user_ids: ['z2', 'z1', 'z3']});
      assert.deepEqual(only.json.tokens.map((t) => decodeJwt(t).payload.user_id), ['z2', 'z1', 'z3']);
      for (const t of only.json.tokens) assert.equal((await srv.request('GET', 'user_info', {token: t})).status, 200);
    });

    it('neither user_id nor user_ids -> one anonymous token', async () => {
      const r = await authtoken(srv, {app_id: CLIENT_ID, channel_id: '31', role: 'viewer'});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(Object.keys(r.json), ['token']);
      const p = checkCommonClaims(r.json.token, {role: 'viewer', channel_id: '31'});
      assert.ok(!('user_id' in p), `anonymous token has user_id ${p.user_id}`);
      assert.equal(typeof p.opaque_user_id, 'string');
      assert.ok(p.opaque_user_id.startsWith('A'), `opaque id ${p.opaque_user_id}`);
      assert.equal((await srv.request('GET', 'user_info', {token: r.json.token})).status, 200);
    });

    it('numeric channel_id is accepted', async () => {
      const r = await authtoken(srv, {app_id: CLIENT_ID, channel_id: 12345, role: 'viewer', user_id: 55});
      assert.equal(r.status, 200, r.text);
      const p = checkCommonClaims(r.json.token, {role: 'viewer', channel_id: '12345'});
      assert.equal(p.user_id, '55');
      const s = await srv.request('POST', 'viewer_state', {token: r.json.token, body: {numeric: true}});
      assert.equal(s.status, 200, s.text);
    });

    it('refuses a body without app_id/extension_id, and non-JSON bodies', async () => {
      assertJsonError(await authtoken(srv, {channel_id: '1', role: 'viewer'}), 400, 'no client id');
      assertJsonError(await srv.request('POST', 'authtoken', {rawBody: 'nope'}), 400, 'not json');
    });

    it('payload segments never contain "-" or "_" (200 tokens with odd ids)', async () => {
      const odd = ['>', '?', '~', '>>', '??', '~~', '>?~', 'a>', 'ab>', 'abc?', '~x', 'x~y', '?>?', '>~?>', 'é', 'ü>', '日本', '\u007f'];
      const tokens = [];
      for (let batch = 0; batch < 10; batch++) {
        const channel = `c${'>?~'[batch % 3]}${batch}${'~'.repeat(batch % 4)}`;
        const userIds = [];
        for (let i = 0; i < 20; i++) {
          const k = batch * 20 + i;
          userIds.push(`${'x'.repeat(k % 7)}${odd[k % odd.length]}${k}${odd[(k * 5) % odd.length]}`);
        }
        const r = await authtoken(srv, {app_id: CLIENT_ID, channel_id: channel, role: batch % 2 ? 'viewer' : 'moderator', user_ids: userIds});
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.tokens.length, 20);
        r.json.tokens.forEach((t, i) => tokens.push({t, channel, user: userIds[i]}));
      }
      assert.equal(tokens.length, 200);
      for (const {t, channel, user} of tokens) {
        const [, payloadSeg] = t.split('.');
        assert.ok(!/[-_]/.test(payloadSeg), `payload segment has - or _ for user ${JSON.stringify(user)}: ${payloadSeg}`);
        // The client decodes with atob (standard base64 only).
        const claims = JSON.parse(Buffer.from(atob(payloadSeg), 'latin1').toString('utf8'));
        assert.equal(claims.user_id, user);
        assert.equal(claims.channel_id, channel);
      }
      // A few of them are accepted by the server.
      for (const {t} of tokens.slice(0, 5)) assert.equal((await srv.request('GET', 'user_info', {token: t})).status, 200);
    });
  });

  describe('metrics (fresh server)', () => {
    let m;
    before(async () => { m = await startServer(); });
    after(async () => { if (m) { await m.stop(); m.cleanup(); } });

    it('counts exactly the requests made, with a latency histogram and store counters', async () => {
      const tok = await m.sandboxToken({role: 'viewer', channel_id: 'mc', user_id: 'mu'});
      for (let i = 0; i < 7; i++) assert.equal((await m.request('GET', 'user_info', {token: tok})).status, 200);
      for (let i = 0; i < 3; i++) assert.equal((await m.request('GET', 'user_info')).status, 401);
      const before = await m.request('GET', '/metrics');
      assert.equal(before.status, 200);
      assert.match(before.headers.get('content-type'), /^text\/plain/);
      const text = before.text;
      const line = (re) => { const x = text.match(re); return x ? Number(x[1]) : undefined; };
      assert.equal(line(/^medkit_http_requests_total\{route="GET \/v1\/e\/user_info",status="200"\} (\d+)$/m), 7, text);
      assert.equal(line(/^medkit_http_requests_total\{route="GET \/v1\/e\/user_info",status="401"\} (\d+)$/m), 3, text);
      assert.equal(line(/^medkit_http_requests_total\{route="POST \/v1\/e\/authtoken",status="200"\} (\d+)$/m), 1, text);
      // Histogram: cumulative buckets ending in +Inf == count == 10.
      const buckets = [...text.matchAll(/^medkit_http_request_duration_seconds_bucket\{route="GET \/v1\/e\/user_info",le="([^"]+)"\} (\d+)$/gm)];
      assert.ok(buckets.length >= 2, 'histogram buckets for user_info');
      let prev = 0;
      for (const [, , v] of buckets) { assert.ok(Number(v) >= prev, 'buckets are cumulative'); prev = Number(v); }
      assert.equal(buckets.at(-1)[1], '+Inf');
      assert.equal(Number(buckets.at(-1)[2]), 10);
      assert.equal(line(/^medkit_http_request_duration_seconds_count\{route="GET \/v1\/e\/user_info"\} (\d+)$/m), 10);
      assert.match(text, /^medkit_http_request_duration_seconds_sum\{route="GET \/v1\/e\/user_info"\} [0-9.e+-]+$/m);
      assert.match(text, /^# TYPE medkit_http_request_duration_seconds histogram$/m);
      assert.match(text, /^medkit_store_operations_total\{[^}]*\} \d+$/m);

      // A write shows up in the store counters; the metrics request itself is counted too.
      const sumStore = (t) => [...t.matchAll(/^medkit_store_operations_total\{[^}]*\} (\d+)$/gm)].reduce((a, x) => a + Number(x[1]), 0);
      assert.equal((await m.request('POST', 'viewer_state', {token: tok, body: {m: 1}})).status, 200);
      const after2 = (await m.request('GET', '/metrics')).text;
      assert.ok(sumStore(after2) > sumStore(text), 'store operations increased after a write');
      assert.equal((after2.match(/^medkit_http_requests_total\{route="GET \/v1\/e\/user_info",status="200"\} (\d+)$/m) || [])[1], '7');
      assert.match(after2, /^medkit_http_requests_total\{route="GET \/metrics",status="200"\} 1$/m);
      assert.match(after2, /^medkit_http_requests_total\{route="POST \/v1\/e\/viewer_state",status="200"\} 1$/m);
    });
  });

  describe('graceful shutdown', () => {
    it('SIGTERM: a request in flight still gets its answer, then the process exits 0', async () => {
      const g = await startServer();
      const sockets = [];
      try {
        const tok = await g.sandboxToken({role: 'viewer', channel_id: 'gs', user_id: 'gu'});
        // An idle keep-alive connection: the server closes it when draining starts.
        const idle = await RawConnection.open(g.port);
        sockets.push(idle);
        await idle.write(rawRequestText('GET', '/healthz'));
        assert.equal((await idle.readResponse()).status, 200);
        // A request in flight: headers and half of the body are sent before SIGTERM.
        const body = JSON.stringify({inflight: true, pad: 'p'.repeat(2000)});
        const busy = await RawConnection.open(g.port);
        sockets.push(busy);
        await busy.write(`POST /v1/e/viewer_state HTTP/1.1\r\nHost: x\r\nAuthorization: ${CLIENT_ID} ${tok}\r\n` +
                         `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n` + body.slice(0, 1000));
        await new Promise((r) => setTimeout(r, 200));
        const stopped = g.stop();
        assert.ok(await idle.waitClosed(5000), 'idle connection closed on drain');
        await busy.write(body.slice(1000));
        const r = await busy.readResponse({timeout: 8000});
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.json, {});
        const exit = await stopped;
        assert.deepEqual(exit, {code: 0, signal: null});
        // The answered write was kept.
        const again = await startServer({dataDir: g.dataDir});
        try {
          const v = await again.request('GET', 'viewer_state', {token: tok});
          assert.equal(v.status, 200);
          assert.equal(v.json.inflight, true);
        } finally { await again.stop(); }
      } finally {
        for (const c of sockets) c.close();
        await g.kill9();
        g.cleanup();
      }
    });

    it('SIGTERM on an idle server exits 0 and stops accepting connections', async () => {
      const g = await startServer();
      try {
        assert.equal((await g.request('GET', '/healthz')).status, 200);
        const exit = await g.stop();
        assert.deepEqual(exit, {code: 0, signal: null});
        await assert.rejects(fetch(g.base + '/healthz'));
      } finally {
        g.cleanup();
      }
    });

    it('SIGTERM while a pipelined batch is being answered: responses stay whole and in order', async () => {
      const g = await startServer();
      try {
        const tok = await g.sandboxToken({role: 'viewer', channel_id: 'gs', user_id: 'gp'});
        const c = await RawConnection.open(g.port);
        const reqs = [];
        for (let i = 0; i < 50; i++) {
          reqs.push(rawRequestText('POST', '/v1/e/viewer_state', {headers: {Authorization: `${CLIENT_ID} ${tok}`}, body: JSON.stringify({i})}));
        }
        await c.write(Buffer.concat(reqs.map((x) => Buffer.from(x))));
        const first = await c.readResponse();
        assert.equal(first.status, 200);
        const stopped = g.stop();
        let answered = 1;
        for (;;) {
          let r;
          try { r = await c.readResponse({timeout: 5000}); } catch { break; }
          assert.equal(r.status, 200, r.text);
          assert.deepEqual(r.json, {});
          answered++;
        }
        assert.ok(answered <= 50);
        assert.ok(await c.waitClosed(5000), 'connection closed after draining');
        assert.deepEqual(await stopped, {code: 0, signal: null});
        c.close();
        // Whatever was answered is stored: the last answered write (or a later one) is there.
        const again = await startServer({dataDir: g.dataDir});
        try {
          const v = await again.request('GET', 'viewer_state', {token: tok});
          assert.ok(v.json.i >= answered - 1, `stored i=${v.json.i}, answered ${answered}`);
        } finally { await again.stop(); }
      } finally {
        await g.kill9();
        g.cleanup();
      }
    });
  });
});
