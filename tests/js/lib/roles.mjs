// Role/token helpers for the state and config suites (state.test.mjs, config.test.mjs).
//
// Tokens are signed in-process with signJwt from server.mjs, so a suite can mint hundreds of
// them without spawning `medkit token` each time:
//   * sandbox servers: the server's own key (data dir `signing.key`), claims carry
//     allowed_stage "sandbox" — the same tokens `POST authtoken` and `medkit token --data-dir`
//     produce;
//   * production servers: the extension's base64 secret, no allowed_stage claim.
//
//   const t = tokenFactory(srv);                    // sandbox
//   const p = tokenFactory(prod, {secret: SECRET}); // production
//   const tok = t.as('viewer', {channel: 'c1', user: 'u1'});
//   const r = await t.req('GET', 'channel_state', tok, {body});
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import {test, describe} from 'node:test';
import assert from 'node:assert/strict';
import {signJwt, startServer, CLIENT_ID} from './server.mjs';

// A random base64 extension secret (32 bytes).
export function randomSecret() {
  return crypto.randomBytes(32).toString('base64');
}

// The sandbox server's own signing key, raw bytes.
export function sandboxKey(dataDir) {
  const b64 = fs.readFileSync(path.join(dataDir, 'signing.key'), 'utf8').trim();
  return Buffer.from(b64, 'base64');
}

let uniq = 0;
// A process-unique id with a readable prefix, for isolating tests that share one server.
export function uid(prefix = 'id') {
  uniq += 1;
  return `${prefix}${process.pid.toString(36)}${uniq.toString(36)}${crypto.randomBytes(2).toString('hex')}`;
}

// Builds claims for a logical role. kind: viewer | moderator | broadcaster | admin | backend |
// external | anonymous (a viewer without user_id). Any other kind is copied as the role claim.
//   channel: channel_id claim; user: user_id claim (broadcaster defaults to the channel id,
//   anonymous never has one); opaque: opaque_user_id (default U<user>, or A<random>).
export function claimsFor(kind, {channel = '', user, opaque, clientId = CLIENT_ID, stage = 'sandbox',
                                 ttl = 3600, extra = {}} = {}) {
  const now = Math.floor(Date.now() / 1000);
  let role = kind;
  if (kind === 'anonymous') { role = 'viewer'; user = undefined; }
  if (kind === 'broadcaster' && user === undefined) user = channel;
  const claims = {exp: now + ttl, iat: now, iss: 'muxy', aud: 'muxy.io', sub: 'extensions'};
  if (stage === 'sandbox') claims.allowed_stage = 'sandbox';
  claims.channel_id = channel;
  claims.opaque_user_id = opaque !== undefined ? opaque
    : (user ? `U${user}` : `A${crypto.randomBytes(6).toString('hex')}`);
  if (user) claims.user_id = user;
  claims.role = role;
  claims.extension_id = clientId;
  return {...claims, ...extra};
}

// Token factory bound to a server. For production pass {secret} (base64 extension secret).
export function tokenFactory(srv, {secret, stage} = {}) {
  const key = secret ? Buffer.from(secret, 'base64') : sandboxKey(srv.dataDir);
  const st = stage || (secret ? 'production' : 'sandbox');
  const f = {
    srv,
    stage: st,
    clientId: CLIENT_ID,
    // Signed token for a logical role (see claimsFor).
    as(kind, opts = {}) {
      const clientId = opts.clientId || f.clientId;
      return signJwt({alg: 'HS256', typ: 'JWT'}, claimsFor(kind, {stage: st, ...opts, clientId}), key);
    },
    // Request with a token. opts: body, rawBody, clientId, headers.
    req(method, endpoint, token, opts = {}) {
      return srv.request(method, endpoint, {token, clientId: opts.clientId || f.clientId, ...opts});
    },
  };
  return f;
}

// The refusal body of the document policy.
export const REFUSED = {reason: 'The JWT role is not allowed to perform this operation.'};
export const USER_ID_REQUIRED = {reason: 'user id required'};

// ---------------------------------------------------------------------------------------------
// Logical roles used by the policy tables.
//   sandbox:    every admin is validated; no extension is registered, so there is no owner.
//   production: extension PROD_CLIENT with owner PROD_OWNER and administrator PROD_ADMIN.
export const PROD_CLIENT = 'prodext';
export const PROD_CLIENT2 = 'prodext2';
export const PROD_OWNER = 'owner1';
export const PROD_ADMIN = 'admin7';

// Production config with two extensions (the second one for cross-client isolation).
export function prodConfig(secret, secret2) {
  return {extensions: [
    {client_id: PROD_CLIENT, secret, owner_id: PROD_OWNER, admin_ids: [PROD_ADMIN]},
    {client_id: PROD_CLIENT2, secret: secret2, owner_id: 'owner2', admin_ids: []},
  ]};
}

// A sandbox server and a production one (extensions of prodConfig, PROD_CLIENT's secret given)
// side by side, with a token factory for each: {sb, prod, SB, PR, stop()}.
export async function startBothStages(secret) {
  const [sb, prod] = await Promise.all([
    startServer({stage: 'sandbox'}),
    startServer({stage: 'production', config: prodConfig(secret, randomSecret())}),
  ]);
  const PR = tokenFactory(prod, {secret});
  PR.clientId = PROD_CLIENT;
  return {
    sb, prod, SB: tokenFactory(sb), PR,
    async stop() {
      await Promise.all([sb.stop(), prod.stop()]);
      sb.cleanup();
      prod.cleanup();
    },
  };
}

export const SANDBOX_ROLES = ['viewer', 'moderator', 'broadcaster', 'admin', 'backend', 'external',
                              'anonymous'];
// admin = an admin that is neither owner nor listed (not validated in production).
export const PROD_ROLES = ['viewer', 'moderator', 'broadcaster', 'ownerBroadcaster', 'admin',
                           'ownerAdmin', 'listedAdmin', 'backend', 'external', 'anonymous'];

// A per-test scope on one server: fresh channel ids and user ids (and, in the sandbox, a fresh
// client id, so extension-wide documents start empty). `other` is the token factory of a second
// extension (production); in the sandbox the other client is the same server key with another id.
//   s.tok(who)                         who = 'viewer' | {role, channel, user, opaque, other}
//   s.call(method, path, who, body, {rawBody, headers})
export function makeScope(f, {other} = {}) {
  const tag = uid('');
  const s = {
    tag,
    f,
    channel: `ch${tag}`,
    otherChannel: `ox${tag}`,
    clientId: f.stage === 'sandbox' ? `cl${tag}` : f.clientId,
    otherClientId: other ? other.clientId : `oc${tag}`,
    users: {viewer: `vw${tag}`, moderator: `md${tag}`, admin: `ad${tag}`, backend: `be${tag}`,
            external: `ex${tag}`},
    anonOpaque: `A${tag}`,
    // Channel a role's token carries by default.
    channelOf(role) { return role === 'ownerBroadcaster' ? PROD_OWNER : s.channel; },
    // User id a role's token carries (undefined for anonymous).
    userOf(role) {
      switch (role) {
        case 'broadcaster': return s.channel;
        case 'ownerBroadcaster': case 'ownerAdmin': return PROD_OWNER;
        case 'listedAdmin': return PROD_ADMIN;
        case 'anonymous': return undefined;
        default: return s.users[role] || `${role}${tag}`;
      }
    },
    spec(who) {
      const w = typeof who === 'string' ? {role: who} : who;
      const role = w.role;
      const kind = {ownerBroadcaster: 'broadcaster', ownerAdmin: 'admin', listedAdmin: 'admin'}[role] || role;
      const channel = w.channel !== undefined ? w.channel : s.channelOf(role);
      const user = 'user' in w ? w.user : s.userOf(role);
      const opts = {channel};
      if (kind === 'broadcaster' && !('user' in w)) opts.user = role === 'ownerBroadcaster' ? PROD_OWNER : channel;
      else if (kind !== 'anonymous') opts.user = user;
      if (w.opaque !== undefined) opts.opaque = w.opaque;
      else if (kind === 'anonymous') opts.opaque = s.anonOpaque;
      return {kind, opts, otherClient: !!w.other};
    },
    tok(who) {
      const {kind, opts, otherClient} = s.spec(who);
      if (otherClient) {
        if (other) return other.as(kind, {...opts, clientId: other.clientId});
        return f.as(kind, {...opts, clientId: s.otherClientId});
      }
      return f.as(kind, {...opts, clientId: s.clientId});
    },
    call(method, path, who, body, {rawBody, headers} = {}) {
      const otherClient = typeof who === 'object' && who.other;
      const token = typeof who === 'object' && who.token ? who.token : s.tok(who);
      const clientId = otherClient ? s.otherClientId : s.clientId;
      const fac = otherClient && other ? other : f;
      return fac.srv.request(method, path, {token, clientId, body, rawBody, headers});
    },
  };
  return s;
}

// Asserts status (and body if given); the response text is in the failure message.
export function expectStatus(r, status, body, what = '') {
  assert.equal(r.status, status, `${what} expected ${status}, got ${r.status}: ${r.text}`);
  if (body !== undefined) assert.deepEqual(r.json, body, `${what} body: ${r.text}`);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Write-semantics suites shared by state.test.mjs and config.test.mjs: POST (replace, body
// forms) and PATCH (RFC 6902 with leniency, RFC 7386) on one document path, written and read by
// `writer` (a role whose object bodies are merge patches, not multi-target maps).
//   newScope(): a fresh makeScope() on the server under test.
export function documentWriteSuites(path, writer, newScope) {
  const ok = (r, what) => expectStatus(r, 200, {}, what);
  const read = async (s, p, who) => {
    const r = await s.call('GET', p, who);
    expectStatus(r, 200, undefined, `GET ${p}`);
    return r.json;
  };
  describe(`PATCH ${path} (as ${writer})`, () => {
    const setup = async (doc) => {
      const s = newScope();
      if (doc) ok(await s.call('POST', path, writer, doc), 'setup POST');
      return s;
    };
    const get = (s) => read(s, path, writer);

    test('RFC 6902: add, remove, replace, move, copy, test in one patch', async () => {
      const s = await setup({a: 1, b: {c: [1, 2, 3]}, d: 'x', 'sl/ash': 1, 'til~de': 2});
      ok(await s.call('PATCH', path, writer, [
        {op: 'test', path: '/a', value: 1},
        {op: 'add', path: '/b/c/1', value: 9},
        {op: 'add', path: '/b/c/-', value: 4},
        {op: 'remove', path: '/d'},
        {op: 'replace', path: '/a', value: {deep: true}},
        {op: 'copy', from: '/b/c', path: '/e'},
        {op: 'move', from: '/a', path: '/f'},
        {op: 'remove', path: '/sl~1ash'},
        {op: 'replace', path: '/til~0de', value: 3},
        {op: 'test', path: '/f/deep', value: true},
      ]));
      assert.deepEqual(await get(s), {b: {c: [1, 9, 2, 3, 4]}, e: [1, 9, 2, 3, 4], f: {deep: true}, 'til~de': 3});
    });

    test('RFC 6902: a failing test op → 400 and nothing written (earlier ops rolled back)', async () => {
      const s = await setup({a: 1, list: [1]});
      const r = await s.call('PATCH', path, writer, [
        {op: 'add', path: '/new', value: 1},
        {op: 'remove', path: '/list/0'},
        {op: 'test', path: '/a', value: 2},
      ]);
      expectStatus(r, 400);
      assert.ok(r.json && typeof r.json.reason === 'string', r.text);
      assert.deepEqual(await get(s), {a: 1, list: [1]});
    });

    test('RFC 6902: invalid ops → 400, document unchanged', async () => {
      const doc = {a: 1, arr: [1, 2]};
      const s = await setup(doc);
      const bad = [
        [{op: 'frobnicate', path: '/a', value: 1}],
        [{op: 'move', path: '/b'}],                       // move without from
        [{op: 'copy', path: '/b', value: null}],          // copy without from (GameLink style)
        [{op: 'remove', path: '/missing'}],
        [{op: 'replace', path: '/missing', value: 1}],
        [{op: 'add', path: '/arr/7', value: 1}],
        [{op: 'add', path: 'no-slash', value: 1}],
        [{op: 'add', path: '/a/b', value: 1}],            // parent is a number
        [{op: 'replace', path: '', value: [1, 2]}],       // root must stay an object
        [{op: 'remove', path: ''}],
        [{op: 'move', from: '/arr', path: '/arr/0'}],     // into its own child
        ['not an op'],
        [{op: 'add', path: '/ok', value: 1}, {op: 'add'}],
      ];
      for (const patch of bad) {
        expectStatus(await s.call('PATCH', path, writer, patch), 400, undefined, JSON.stringify(patch));
      }
      // GameLink clients send move/copy without "from": the error says so.
      const r = await s.call('PATCH', path, writer, [{op: 'move', path: '/b', value: null}]);
      expectStatus(r, 400);
      assert.match(r.json.reason, /\bfrom\b/, r.text);
      assert.deepEqual(await get(s), doc);
    });

    test('RFC 7386 merge: null deletes, objects merge recursively, arrays and scalars replace', async () => {
      const s = await setup({a: 1, b: {c: 1, d: 2, e: {f: 1}}, arr: [1, 2, 3], keep: true, s: 'x'});
      ok(await s.call('PATCH', path, writer,
                      {a: null, b: {c: null, e: {g: 2}, n: 5}, arr: [9], s: {now: 'obj'}, added: [1], gone: null}));
      assert.deepEqual(await get(s), {b: {d: 2, e: {f: 1, g: 2}, n: 5}, arr: [9], keep: true, s: {now: 'obj'}, added: [1]});
      ok(await s.call('PATCH', path, writer, {}));
      assert.deepEqual(await get(s), {b: {d: 2, e: {f: 1, g: 2}, n: 5}, arr: [9], keep: true, s: {now: 'obj'}, added: [1]});
    });

    test('merge patch on a missing document creates it; nulls inside new objects are dropped', async () => {
      const s = await setup();
      ok(await s.call('PATCH', path, writer, {x: {y: 1, z: null}, w: null}));
      assert.deepEqual(await get(s), {x: {y: 1}});
    });

    test('leniency: GameLink-style remove with "value": null', async () => {
      const s = await setup({game: {text: 'hi', score: 3}});
      ok(await s.call('PATCH', path, writer, [{op: 'remove', path: '/game/text', value: null}]));
      assert.deepEqual(await get(s), {game: {score: 3}});
      ok(await s.call('PATCH', path, writer, [{op: 'remove', path: '/game/score', value: 12345}]));
      assert.deepEqual(await get(s), {game: {}});
    });

    test('leniency: add to /a/b/c on {} creates the parents (also on an unset document)', async () => {
      const s = await setup();
      ok(await s.call('PATCH', path, writer, [{op: 'add', path: '/game/text/game_data', value: 'x'}]));
      assert.deepEqual(await get(s), {game: {text: {game_data: 'x'}}});
      const s2 = await setup({});
      ok(await s2.call('PATCH', path, writer, [{op: 'add', path: '/a/b/c', value: 1}]));
      assert.deepEqual(await read(s2, path, writer), {a: {b: {c: 1}}});
    });

    test('extra ops add_intermediates and remove_value', async () => {
      const s = await setup({tags: ['x', 'y', 'x', {k: 1}], keep: 1});
      ok(await s.call('PATCH', path, writer, [
        {op: 'add_intermediates', path: '/p/q/r', value: [1]},
        {op: 'remove_value', path: '/tags', value: 'x'},
        {op: 'remove_value', path: '/tags', value: {k: 1}},
        {op: 'remove_value', path: '/tags', value: 'absent'},
      ]));
      assert.deepEqual(await get(s), {tags: ['y'], keep: 1, p: {q: {r: [1]}}});
      expectStatus(await s.call('PATCH', path, writer, [{op: 'remove_value', path: '/keep', value: 1}]), 400);
      assert.deepEqual(await get(s), {tags: ['y'], keep: 1, p: {q: {r: [1]}}});
    });

    test('a double-encoded PATCH body (JSON string containing a patch) is accepted', async () => {
      const s = await setup({a: 1});
      ok(await s.call('PATCH', path, writer, undefined,
                      {rawBody: JSON.stringify(JSON.stringify([{op: 'add', path: '/b', value: 2}]))}));
      ok(await s.call('PATCH', path, writer, undefined, {rawBody: JSON.stringify(JSON.stringify({c: 3}))}));
      assert.deepEqual(await get(s), {a: 1, b: 2, c: 3});
    });

    test('a PATCH body that is neither array nor object → 400, unchanged', async () => {
      const s = await setup({a: 1});
      for (const raw of ['5', '"text"', 'null', 'true', '{bad json', '', JSON.stringify(JSON.stringify(7))]) {
        const r = await s.call('PATCH', path, writer, undefined, {rawBody: raw});
        expectStatus(r, 400, undefined, `body ${raw}`);
      }
      assert.deepEqual(await get(s), {a: 1});
    });
  });

  describe(`POST ${path} (as ${writer})`, () => {
    test(`${path}: POST replaces the whole document; {} clears it`, async () => {
      const s = newScope();
      ok(await s.call('POST', path, writer, {a: 1, b: {c: 2}}));
      ok(await s.call('POST', path, writer, {b: {d: 3}}));
      assert.deepEqual(await read(s, path, writer), {b: {d: 3}});
      ok(await s.call('POST', path, writer, {}));
      assert.deepEqual(await read(s, path, writer), {});
    });

    test(`${path}: double-encoded POST body (JSON string containing JSON) is stored as the object`, async () => {
      const s = newScope();
      const doc = {stringState: 'hello', numberState: 123, booleanState: true, nested: {q: '"quoted"'}};
      ok(await s.call('POST', path, writer, undefined, {rawBody: JSON.stringify(JSON.stringify(doc))}));
      assert.deepEqual(await read(s, path, writer), doc);
    });

    test(`${path}: non-object POST bodies → 400, document unchanged`, async () => {
      const s = newScope();
      ok(await s.call('POST', path, writer, {keep: 1}));
      for (const raw of ['[1,2]', '5', '"hello"', 'null', 'true', '{not json', '',
                         JSON.stringify(JSON.stringify([1])), JSON.stringify('[{"op":"add"}]')]) {
        expectStatus(await s.call('POST', path, writer, undefined, {rawBody: raw}), 400, undefined, `body ${raw}`);
      }
      // A JSON Patch array is not accepted by POST either.
      expectStatus(await s.call('POST', path, writer, [{op: 'add', path: '/x', value: 1}]), 400);
      assert.deepEqual(await read(s, path, writer), {keep: 1});
    });

    test(`${path}: body parsed as JSON whatever the Content-Type`, async () => {
      const s = newScope();
      for (const [i, ct] of ['application/json', 'text/plain', 'application/x-www-form-urlencoded; charset=UTF-8'].entries()) {
        ok(await s.call('POST', path, writer, undefined, {rawBody: JSON.stringify({i}), headers: {'Content-Type': ct}}), ct);
        assert.deepEqual(await read(s, path, writer), {i}, ct);
      }
    });
  });
}
