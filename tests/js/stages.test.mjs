// Sandbox vs production (spec 4, 10): token verification, stage binding, validated admins,
// owner broadcasters, backend/external roles, and the `medkit token` subcommand.
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {execFileSync} from 'node:child_process';
import {startServer, mintToken, signJwt, signJwtWith, decodeJwt, readSigningKey, BIN, CLIENT_ID} from './lib/server.mjs';

const HS256 = {alg: 'HS256', typ: 'JWT'};
const now = () => Math.floor(Date.now() / 1000);

function assertJsonError(r, status, what = '') {
  assert.equal(r.status, status, `${what}: status (body ${r.text})`);
  assert.match(r.headers.get('content-type') || '', /^application\/json\b/, `${what}: content-type`);
  assert.ok(r.json && typeof r.json.reason === 'string' && r.json.reason.length > 0, `${what}: {"reason"} body, got ${r.text}`);
}

// GET with an exact Authorization header value (or none).
async function getWith(srv, path, authorization) {
  const headers = {};
  if (authorization !== undefined) headers.Authorization = authorization;
  return srv.request('GET', path, {headers});
}

describe('production stage', () => {
  const EXT = 'prodext';
  const secretBytes = crypto.randomBytes(32);
  const secret = secretBytes.toString('base64');
  let srv;
  // Signs claims with the extension secret; exp defaults to an hour ahead.
  const sign = (claims, key = secretBytes) => signJwt(HS256, {exp: now() + 3600, ...claims}, key);
  const tok = {};

  before(async () => {
    srv = await startServer({
      stage: 'production',
      config: {extensions: [{client_id: EXT, secret, owner_id: 'owner1', admin_ids: ['admin7']}]},
    });
    tok.viewer = sign({role: 'viewer', channel_id: 'c1', opaque_user_id: 'Uv1', user_id: 'v1'});
    tok.backend = sign({role: 'backend', channel_id: 'c1', user_id: 'owner1'});
    tok.external = sign({role: 'external', channel_id: 'c1'});
    tok.admin7 = sign({role: 'admin', channel_id: 'c1', user_id: 'admin7'});
    tok.adminOwner = sign({role: 'admin', channel_id: 'c1', user_id: 'owner1'});
    tok.adminOther = sign({role: 'admin', channel_id: 'c1', user_id: 'rando'});
    tok.adminNoUser = sign({role: 'admin', channel_id: 'c1'});
    tok.ownerBroadcaster = sign({role: 'broadcaster', channel_id: 'owner1', user_id: 'owner1'});
    tok.otherBroadcaster = sign({role: 'broadcaster', channel_id: 'c1', user_id: 'c1'});
  });
  after(async () => { if (srv) { await srv.stop(); srv.cleanup(); } });

  const req = (method, path, token, body) => srv.request(method, path, {token, clientId: EXT, body});

  it('POST authtoken -> 404 JSON', async () => {
    const r = await srv.request('POST', 'authtoken?role=viewer', {body: {app_id: EXT, channel_id: '1', role: 'viewer', user_id: '2'}});
    assertJsonError(r, 404, 'authtoken');
  });

  it('a token signed with the extension secret works', async () => {
    const r = await req('GET', 'channel_state', tok.viewer);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, {});
    assert.equal((await req('GET', 'user_info', tok.viewer)).status, 200);
    assert.equal((await req('POST', 'viewer_state', tok.viewer, {p: 1})).status, 200);
    assert.deepEqual((await req('GET', 'viewer_state', tok.viewer)).json, {p: 1});
    // A token made by `medkit token --secret` works as well.
    const minted = mintToken({clientId: EXT, role: 'viewer', channel: 'c1', user: 'v1', secret});
    assert.deepEqual((await req('GET', 'viewer_state', minted)).json, {p: 1});
  });

  it('wrong secret -> 401', async () => {
    const r = await req('GET', 'channel_state', sign({role: 'viewer', channel_id: 'c1'}, crypto.randomBytes(32)));
    assertJsonError(r, 401, 'wrong secret');
    // The secret's base64 text used as the key (not decoded) is wrong too.
    const r2 = await req('GET', 'channel_state', sign({role: 'viewer', channel_id: 'c1'}, Buffer.from(secret)));
    assertJsonError(r2, 401, 'undecoded secret');
  });

  it('unknown client id in the header -> 401 {"reason":"No such extension found"}', async () => {
    const r = await srv.request('GET', 'channel_state', {token: tok.viewer, clientId: 'otherext'});
    assertJsonError(r, 401, 'unknown client');
    assert.equal(r.json.reason, 'No such extension found');
    const minted = mintToken({clientId: 'otherext', role: 'viewer', channel: 'c1', secret});
    const r2 = await srv.request('GET', 'channel_state', {token: minted, clientId: 'otherext'});
    assertJsonError(r2, 401, 'unknown client, own token');
    assert.equal(r2.json.reason, 'No such extension found');
  });

  it('a token carrying allowed_stage -> 403 "Allowed stage mismatch"', async () => {
    for (const stage of ['sandbox', 'testing', 'production']) {
      const r = await req('GET', 'channel_state', sign({role: 'viewer', channel_id: 'c1', allowed_stage: stage}));
      assertJsonError(r, 403, `allowed_stage ${stage}`);
      assert.deepEqual(r.json, {reason: 'User was unauthorized to access this resource', info: 'Allowed stage mismatch'});
    }
    // `medkit token --stage sandbox` with the right secret is such a token.
    const minted = mintToken({clientId: EXT, role: 'broadcaster', channel: 'c1', user: 'c1', secret, stage: 'sandbox'});
    assert.equal(decodeJwt(minted).payload.allowed_stage, 'sandbox');
    const r = await req('POST', 'channel_state', minted, {x: 1});
    assert.deepEqual(r.json, {reason: 'User was unauthorized to access this resource', info: 'Allowed stage mismatch'});
    assert.deepEqual((await req('GET', 'channel_state', tok.viewer)).json, {});
  });

  it('alg none -> 401', async () => {
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const claims = {exp: now() + 3600, role: 'backend', channel_id: 'c1'};
    for (const alg of ['none', 'None', 'NONE']) {
      const unsigned = `${enc({alg, typ: 'JWT'})}.${enc(claims)}.`;
      assertJsonError(await req('GET', 'channel_state', unsigned), 401, `alg ${alg} unsigned`);
      // Same with an HMAC signature present.
      const signed = signJwt({alg, typ: 'JWT'}, claims, secretBytes);
      assertJsonError(await req('GET', 'channel_state', signed), 401, `alg ${alg} signed`);
    }
    const noAlg = signJwt({typ: 'JWT'}, claims, secretBytes);
    assertJsonError(await req('GET', 'channel_state', noAlg), 401, 'no alg');
  });

  it('HS512 (and other algorithms) -> 401', async () => {
    const claims = {exp: now() + 3600, role: 'backend', channel_id: 'c1'};
    assertJsonError(await req('GET', 'channel_state', signJwtWith('sha512', {alg: 'HS512', typ: 'JWT'}, claims, secretBytes)), 401, 'HS512');
    assertJsonError(await req('GET', 'channel_state', signJwtWith('sha384', {alg: 'HS384', typ: 'JWT'}, claims, secretBytes)), 401, 'HS384');
    assertJsonError(await req('GET', 'channel_state', signJwtWith('sha256', {alg: 'RS256', typ: 'JWT'}, claims, secretBytes)), 401, 'RS256 header');
    assertJsonError(await req('GET', 'channel_state', signJwtWith('sha512', HS256, claims, secretBytes)), 401, 'HS256 header, SHA-512 MAC');
  });

  it('expired token -> 401; missing or non-numeric exp -> 401', async () => {
    assertJsonError(await req('GET', 'channel_state', sign({role: 'viewer', channel_id: 'c1', exp: now() - 3600})), 401, 'expired an hour ago');
    assertJsonError(await req('GET', 'channel_state', sign({role: 'viewer', channel_id: 'c1', exp: now() - 600})), 401, 'expired 10 min ago');
    const noExp = signJwt(HS256, {role: 'viewer', channel_id: 'c1'}, secretBytes);
    assertJsonError(await req('GET', 'channel_state', noExp), 401, 'no exp');
    const strExp = signJwt(HS256, {role: 'viewer', channel_id: 'c1', exp: String(now() + 3600)}, secretBytes);
    assertJsonError(await req('GET', 'channel_state', strExp), 401, 'string exp');
    const nullExp = signJwt(HS256, {role: 'viewer', channel_id: 'c1', exp: null}, secretBytes);
    assertJsonError(await req('GET', 'channel_state', nullExp), 401, 'null exp');
  });

  it('missing or malformed Authorization -> 401', async () => {
    assertJsonError(await getWith(srv, 'channel_state'), 401, 'missing');
    const [h, p, s] = tok.viewer.split('.');
    const bad = ['', ' ', EXT, `${EXT} `, tok.viewer, `${EXT} not.a.jwt`, `${EXT} garbage`, `${EXT} ${h}.${p}`,
                 `${EXT} ${h}.${p}.${s}.extra`, `${EXT} ${tok.viewer} trailing`, `${EXT} ${h}.${p}.${s.slice(0, -2)}`,
                 `${EXT} ${h}.${p}x.${s}`, `${EXT}:${tok.viewer}`, '""', `Basic ${Buffer.from('a:b').toString('base64')}`];
    for (const value of bad) {
      assertJsonError(await getWith(srv, 'channel_state', value), 401, `Authorization ${JSON.stringify(value.slice(0, 60))}`);
    }
  });

  it('surrounding double quotes and a "Bearer " prefix are tolerated', async () => {
    for (const value of [`"${EXT} ${tok.viewer}"`, `Bearer ${EXT} ${tok.viewer}`, `"Bearer ${EXT} ${tok.viewer}"`,
                         `${EXT}  ${tok.viewer}`, ` ${EXT} ${tok.viewer} `]) {
      const r = await getWith(srv, 'viewer_state', value);
      assert.equal(r.status, 200, `${JSON.stringify(value.slice(0, 40))}: ${r.text}`);
      assert.deepEqual(r.json, {p: 1});
    }
  });

  it('extension_id claim different from the header client id -> 401', async () => {
    const t = sign({role: 'backend', channel_id: 'c1', extension_id: 'someoneelse'});
    assertJsonError(await req('GET', 'channel_state', t), 401, 'extension_id mismatch');
    assertJsonError(await req('POST', 'extension_state', t, {hijack: true}), 401, 'extension_id mismatch write');
    const ok = sign({role: 'viewer', channel_id: 'c1', extension_id: EXT});
    assert.equal((await req('GET', 'channel_state', ok)).status, 200);
  });

  it('a token signed with the server key (no allowed_stage) is accepted too (spec 4.2: secret, then server key)', async () => {
    const t = signJwt(HS256, {exp: now() + 3600, role: 'viewer', channel_id: 'c1', user_id: 'v1', extension_id: EXT}, readSigningKey(srv.dataDir));
    const r = await req('GET', 'viewer_state', t);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, {p: 1});
  });

  describe('validated admins, owner broadcaster, backend', () => {
    const readExt = async () => (await req('GET', 'extension_state', tok.backend)).json;
    const readHidden = async () => (await req('GET', 'extension_hidden_state', tok.backend)).json;
    const readExtConfig = async () => (await req('GET', 'config/extension', tok.backend)).json;

    it('admin with user_id admin7 or owner1 may write extension_state and extension_hidden_state', async () => {
      for (const [name, t] of [['admin7', tok.admin7], ['owner1', tok.adminOwner]]) {
        let r = await req('POST', 'extension_state', t, {by: name});
        assert.equal(r.status, 200, `${name} extension_state: ${r.text}`);
        assert.deepEqual(await readExt(), {by: name});
        r = await req('PATCH', 'extension_state', t, {patched: name});
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(await readExt(), {by: name, patched: name});
        r = await req('POST', 'extension_hidden_state', t, {secret: name});
        assert.equal(r.status, 200, `${name} hidden: ${r.text}`);
        assert.deepEqual(await readHidden(), {secret: name});
        const g = await req('GET', 'extension_hidden_state', t);
        assert.equal(g.status, 200);
        assert.deepEqual(g.json, {secret: name});
      }
    });

    it('admin with another (or no) user_id -> 403 and data unchanged', async () => {
      const ext = await readExt(), hidden = await readHidden(), cfg = await readExtConfig();
      for (const [name, t] of [['rando', tok.adminOther], ['no user', tok.adminNoUser]]) {
        for (const [m, p, body] of [['POST', 'extension_state', {evil: 1}], ['PATCH', 'extension_state', {evil: 1}],
                                    ['POST', 'extension_hidden_state', {evil: 1}], ['PATCH', 'extension_hidden_state', [{op: 'add', path: '/evil', value: 1}]],
                                    ['POST', 'config/extension', {evil: 1}]]) {
          assertJsonError(await req(m, p, t, body), 403, `${name} ${m} ${p}`);
        }
        assertJsonError(await req('GET', 'extension_hidden_state', t), 403, `${name} GET hidden`);
        assertJsonError(await req('GET', 'extension_viewer_state?user_ids=v1', t), 403, `${name} multi-get`);
      }
      assert.deepEqual(await readExt(), ext);
      assert.deepEqual(await readHidden(), hidden);
      assert.deepEqual(await readExtConfig(), cfg);
      // Non-validated admins may still read extension state (any role can).
      assert.deepEqual((await req('GET', 'extension_state', tok.adminOther)).json, ext);
    });

    it('owner broadcaster may write extension_state and config/extension; other broadcaster -> 403', async () => {
      let r = await req('POST', 'extension_state', tok.ownerBroadcaster, {owner: true});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(await readExt(), {owner: true});
      r = await req('POST', 'config/extension', tok.ownerBroadcaster, {cfg: 'owner'});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(await readExtConfig(), {cfg: 'owner'});
      r = await req('PATCH', 'config/extension', tok.ownerBroadcaster, {more: 1});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(await readExtConfig(), {cfg: 'owner', more: 1});

      for (const [m, p, body] of [['POST', 'extension_state', {other: 1}], ['PATCH', 'extension_state', {other: 1}],
                                  ['POST', 'config/extension', {other: 1}], ['PATCH', 'config/extension', {other: 1}],
                                  ['POST', 'extension_hidden_state', {other: 1}]]) {
        assertJsonError(await req(m, p, tok.otherBroadcaster, body), 403, `other broadcaster ${m} ${p}`);
      }
      assert.deepEqual(await readExt(), {owner: true});
      assert.deepEqual(await readExtConfig(), {cfg: 'owner', more: 1});
      // The other broadcaster still owns its channel.
      assert.equal((await req('POST', 'channel_state', tok.otherBroadcaster, {mine: true})).status, 200);
      assert.deepEqual((await req('GET', 'channel_state', tok.viewer)).json, {mine: true});
    });

    it('backend and external roles may write extension_state; viewers may not', async () => {
      let r = await req('POST', 'extension_state', tok.backend, {by: 'backend'});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(await readExt(), {by: 'backend'});
      r = await req('PATCH', 'extension_state', tok.external, [{op: 'add', path: '/ext', value: true}]);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(await readExt(), {by: 'backend', ext: true});
      r = await req('POST', 'extension_hidden_state', tok.external, {h: 'external'});
      assert.equal(r.status, 200, r.text);
      // `medkit token --secret` backend token.
      const minted = mintToken({clientId: EXT, role: 'backend', channel: 'c1', secret});
      assert.equal(decodeJwt(minted).payload.allowed_stage, undefined);
      r = await req('PATCH', 'extension_state', minted, {minted: 1});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(await readExt(), {by: 'backend', ext: true, minted: 1});

      for (const t of [tok.viewer, sign({role: 'moderator', channel_id: 'c1', user_id: 'm'})]) {
        assertJsonError(await req('POST', 'extension_state', t, {viewer: 1}), 403, 'viewer write');
        assertJsonError(await req('POST', 'channel_state', t, {viewer: 1}), 403, 'viewer channel write');
      }
      assert.deepEqual(await readExt(), {by: 'backend', ext: true, minted: 1});
    });
  });

  it('`medkit token --config` signs with the extension secret from the config file', async () => {
    const t = execFileSync(BIN, ['token', '--client-id', EXT, '--role', 'viewer', '--channel', 'c1', '--user', 'v1',
                                 '--config', srv.configFile]).toString().trim();
    const {payload} = decodeJwt(t);
    assert.equal(payload.user_id, 'v1');
    assert.equal(payload.opaque_user_id, 'Uv1');
    assert.equal(payload.allowed_stage, undefined);
    assert.ok(Math.abs(payload.exp - (now() + 3600)) <= 5, `exp ${payload.exp}`);
    assert.deepEqual((await req('GET', 'viewer_state', t)).json, {p: 1});
  });
});

describe('sandbox stage', () => {
  let srv, key;
  before(async () => {
    srv = await startServer();
    key = readSigningKey(srv.dataDir);
  });
  after(async () => { if (srv) { await srv.stop(); srv.cleanup(); } });

  it('any client id works with authtoken tokens, and data is separated per client id', async () => {
    for (const clientId of ['anyext-1', 'zzz', CLIENT_ID]) {
      const b = await srv.sandboxToken({role: 'broadcaster', channel_id: 'sc', clientId});
      const r = await srv.request('POST', 'channel_state', {token: b, clientId, body: {client: clientId}});
      assert.equal(r.status, 200, r.text);
    }
    for (const clientId of ['anyext-1', 'zzz', CLIENT_ID]) {
      const v = await srv.sandboxToken({role: 'viewer', channel_id: 'sc', user_id: 'sv', clientId});
      assert.deepEqual((await srv.request('GET', 'channel_state', {token: v, clientId})).json, {client: clientId});
    }
  });

  it('a sandbox token used with a different client id than it was issued for -> 401', async () => {
    const v = await srv.sandboxToken({role: 'viewer', channel_id: 'sc', user_id: 'sv', clientId: 'anyext-1'});
    assertJsonError(await srv.request('GET', 'channel_state', {token: v, clientId: 'zzz'}), 401, 'cross-extension token');
  });

  it('a token signed with a random key -> 401', async () => {
    const t = signJwt(HS256, {exp: now() + 3600, role: 'viewer', channel_id: 'sc', user_id: 'x', allowed_stage: 'sandbox'}, crypto.randomBytes(32));
    assertJsonError(await srv.request('GET', 'channel_state', {token: t}), 401, 'random key');
    const t2 = signJwt(HS256, {exp: now() + 3600, role: 'admin', channel_id: 'sc'}, crypto.randomBytes(32));
    assertJsonError(await srv.request('POST', 'extension_hidden_state', {token: t2, body: {x: 1}}), 401, 'random key admin');
  });

  it('a token without allowed_stage signed by the server key is accepted', async () => {
    const t = signJwt(HS256, {exp: now() + 3600, role: 'broadcaster', channel_id: 'nc', user_id: 'nc'}, key);
    const r = await srv.request('POST', 'channel_state', {token: t, body: {noclaim: true}});
    assert.equal(r.status, 200, r.text);
    const v = signJwt(HS256, {exp: now() + 3600, role: 'viewer', channel_id: 'nc', opaque_user_id: 'U1'}, key);
    assert.deepEqual((await srv.request('GET', 'channel_state', {token: v})).json, {noclaim: true});
    assert.equal((await srv.request('GET', 'user_info', {token: v})).status, 200);
  });

  it('allowed_stage "production" / "other" -> 403; "sandbox" and "testing" accepted', async () => {
    for (const stage of ['production', 'other']) {
      const t = signJwt(HS256, {exp: now() + 3600, role: 'viewer', channel_id: 'sc', user_id: 'x', allowed_stage: stage}, key);
      const r = await srv.request('GET', 'channel_state', {token: t});
      assertJsonError(r, 403, `allowed_stage ${stage}`);
      assert.deepEqual(r.json, {reason: 'User was unauthorized to access this resource', info: 'Allowed stage mismatch'});
    }
    for (const stage of ['sandbox', 'testing']) {
      const t = signJwt(HS256, {exp: now() + 3600, role: 'viewer', channel_id: 'sc', user_id: 'x', allowed_stage: stage}, key);
      assert.equal((await srv.request('GET', 'channel_state', {token: t})).status, 200, stage);
    }
  });

  it('expired, alg none and missing exp are refused in sandbox too', async () => {
    const expired = signJwt(HS256, {exp: now() - 3600, role: 'viewer', channel_id: 'sc', allowed_stage: 'sandbox'}, key);
    assertJsonError(await srv.request('GET', 'channel_state', {token: expired}), 401, 'expired');
    const noExp = signJwt(HS256, {role: 'viewer', channel_id: 'sc', allowed_stage: 'sandbox'}, key);
    assertJsonError(await srv.request('GET', 'channel_state', {token: noExp}), 401, 'no exp');
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${enc({alg: 'none', typ: 'JWT'})}.${enc({exp: now() + 3600, role: 'admin', channel_id: 'sc'})}.`;
    assertJsonError(await srv.request('GET', 'channel_state', {token: none}), 401, 'alg none');
    assertJsonError(await srv.request('GET', 'channel_state'), 401, 'missing header');
  });

  it('any admin token counts as validated (may read and write hidden state)', async () => {
    const a1 = await srv.sandboxToken({role: 'admin', channel_id: 'sc', user_id: 'whoever'});
    const a2 = await srv.sandboxToken({role: 'admin', channel_id: 'sc'});
    let r = await srv.request('POST', 'extension_hidden_state', {token: a1, body: {hidden: 1}});
    assert.equal(r.status, 200, r.text);
    r = await srv.request('PATCH', 'extension_hidden_state', {token: a2, body: {more: 2}});
    assert.equal(r.status, 200, r.text);
    assert.deepEqual((await srv.request('GET', 'extension_hidden_state', {token: a2})).json, {hidden: 1, more: 2});
    r = await srv.request('POST', 'extension_state', {token: a2, body: {ext: 1}});
    assert.equal(r.status, 200, r.text);
    r = await srv.request('POST', 'config/extension', {token: a1, body: {cfg: 1}});
    assert.equal(r.status, 200, r.text);
    // Viewers still may not.
    const v = await srv.sandboxToken({role: 'viewer', channel_id: 'sc', user_id: 'sv'});
    assertJsonError(await srv.request('GET', 'extension_hidden_state', {token: v}), 403, 'viewer hidden read');
    assertJsonError(await srv.request('POST', 'extension_hidden_state', {token: v, body: {x: 1}}), 403, 'viewer hidden write');
    assertJsonError(await srv.request('POST', 'extension_state', {token: v, body: {x: 1}}), 403, 'viewer ext write');
  });

  it('`medkit token --data-dir` output verifies against the server', async () => {
    const t = mintToken({dataDir: srv.dataDir, role: 'broadcaster', channel: 'tc', user: 'tc', ttl: 600});
    const {header, payload} = decodeJwt(t);
    assert.equal(header.alg, 'HS256');
    assert.equal(payload.allowed_stage, 'sandbox');
    assert.equal(payload.role, 'broadcaster');
    assert.equal(payload.channel_id, 'tc');
    assert.equal(payload.user_id, 'tc');
    assert.equal(payload.extension_id, CLIENT_ID);
    assert.ok(Math.abs(payload.exp - (now() + 600)) <= 5, `exp ${payload.exp}`);
    let r = await srv.request('POST', 'channel_state', {token: t, body: {minted: true}});
    assert.equal(r.status, 200, r.text);
    const v = mintToken({dataDir: srv.dataDir, role: 'viewer', channel: 'tc', opaque: 'Uopaque'});
    assert.equal(decodeJwt(v).payload.opaque_user_id, 'Uopaque');
    r = await srv.request('GET', 'all_state', {token: v});
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.channel, {minted: true});
    // A token for another client id works too (sandbox accepts any client id).
    const other = mintToken({dataDir: srv.dataDir, clientId: 'cli-ext', role: 'admin', channel: 'tc'});
    assert.equal((await srv.request('POST', 'extension_hidden_state', {token: other, clientId: 'cli-ext', body: {a: 1}})).status, 200);
    // Signed with a random secret: refused.
    const wrong = mintToken({secret: crypto.randomBytes(32).toString('base64'), role: 'viewer', channel: 'tc'});
    assertJsonError(await srv.request('GET', 'channel_state', {token: wrong}), 401, 'random secret');
  });
});
