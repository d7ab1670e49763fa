// State stores (spec 4.4, 4.6, 5.3, 12 items 1-3, 13-15): extension_state, channel_state,
// viewer_state, extension_viewer_state, extension_hidden_state and all_state.
//
// A sandbox server (every admin validated, no registered owner) and a production server
// (extension prodext: owner owner1, administrator admin7; a second extension prodext2 for
// isolation) run for the whole file. Every test works in its own scope (fresh channel and user
// ids, and a fresh client id in the sandbox), so tests do not depend on each other; the
// production extension-wide documents are shared, so those tests always seed a unique value
// first and compare against it.
import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer, mintToken, CLIENT_ID} from './lib/server.mjs';
import {tokenFactory, randomSecret, makeScope, expectStatus, uid, REFUSED, USER_ID_REQUIRED,
        SANDBOX_ROLES, PROD_ROLES, PROD_CLIENT, PROD_CLIENT2, PROD_OWNER, PROD_ADMIN,
        prodConfig, documentWriteSuites} from './lib/roles.mjs';

const SECRET = randomSecret();
const SECRET2 = randomSecret();
let sb, prod, SB, PR, PR2;

before(async () => {
  [sb, prod] = await Promise.all([
    startServer({stage: 'sandbox'}),
    startServer({stage: 'production', config: prodConfig(SECRET, SECRET2)}),
  ]);
  SB = tokenFactory(sb);
  PR = tokenFactory(prod, {secret: SECRET});
  PR.clientId = PROD_CLIENT;
  PR2 = tokenFactory(prod, {secret: SECRET2});
  PR2.clientId = PROD_CLIENT2;
});

after(async () => {
  await Promise.all([sb?.stop(), prod?.stop()]);
  sb?.cleanup();
  prod?.cleanup();
});

const sandboxScope = () => makeScope(SB);
const prodScope = () => makeScope(PR, {other: PR2});
const scopeFor = (stage) => (stage === 'sandbox' ? sandboxScope() : prodScope());
const ok = (r, what) => expectStatus(r, 200, {}, what);
const refused = (r, what) => expectStatus(r, 403, REFUSED, what);
const needsUser = (r, what) => expectStatus(r, 400, USER_ID_REQUIRED, what);
async function read(s, path, who) {
  const r = await s.call('GET', path, who);
  expectStatus(r, 200, undefined, `GET ${path} as ${JSON.stringify(who)}`);
  return r.json;
}

// ------------------------------------------------------------------------------------------
// Policy table (document_service.h). 'all' = every role. Sandbox: every admin is validated and
// there is no owner broadcaster (no extension registered).
const STORES = {
  extension_state: {
    scope: 'extension',
    write: {sandbox: ['admin', 'backend', 'external'],
            production: ['ownerAdmin', 'listedAdmin', 'ownerBroadcaster', 'backend', 'external']},
    read: 'all',
  },
  channel_state: {
    scope: 'channel',
    write: {sandbox: ['broadcaster', 'admin', 'backend', 'external'],
            production: ['broadcaster', 'ownerBroadcaster', 'admin', 'ownerAdmin', 'listedAdmin',
                         'backend', 'external']},
    read: 'all',
  },
  viewer_state: {scope: 'viewer', write: 'all', read: 'all'},
  extension_viewer_state: {scope: 'user', write: 'all', read: 'all', needsUser: true},
  extension_hidden_state: {
    scope: 'extension',
    write: {sandbox: ['admin', 'backend', 'external'],
            production: ['ownerAdmin', 'listedAdmin', 'backend', 'external']},
    read: {sandbox: ['admin', 'backend', 'external'],
           production: ['ownerAdmin', 'listedAdmin', 'backend', 'external']},
  },
};
const allows = (rule, stage, role) => rule === 'all' || rule[stage].includes(role);
// Privileged for the extension-viewer user map / user_ids reads: validated admin, backend.
const VALIDATED = {sandbox: ['admin', 'backend', 'external'],
                   production: ['ownerAdmin', 'listedAdmin', 'backend', 'external']};
const isMapCaller = (stage, role) => VALIDATED[stage].includes(role);
const roleLabel = (role) => ({admin: 'admin', ownerAdmin: 'admin (owner, validated)',
                              listedAdmin: 'admin (listed, validated)',
                              ownerBroadcaster: 'owner broadcaster'}[role] || role);

// One matrix cell: path × method × role. Shared documents are seeded (and verified) by a
// backend token on the role's channel; own documents by the role itself.
async function matrixCell(stage, path, method, role) {
  const s = scopeFor(stage);
  const st = STORES[path];
  const own = st.scope === 'viewer' || st.scope === 'user';
  const noUser = st.needsUser && role === 'anonymous';
  const verifier = own ? role : {role: 'backend', channel: s.channelOf(role)};
  const seed = {seed: s.tag};
  if (!noUser) ok(await s.call('POST', path, verifier, seed), 'seed');
  const canRead = allows(st.read, stage, role);
  const canWrite = allows(st.write, stage, role);
  const marker = `${method}-${role}-${s.tag}`;

  if (method === 'GET') {
    const r = await s.call('GET', path, role);
    if (noUser) return needsUser(r);
    if (!canRead) return refused(r);
    return expectStatus(r, 200, seed);
  }

  let body;
  let expected;
  let mapTarget = null;
  if (method === 'POST') {
    body = {by: role, m: marker};
    expected = body;
  } else if (method === 'PATCH-json') {
    body = [{op: 'add', path: '/m', value: marker}, {op: 'test', path: '/seed', value: s.tag}];
    expected = {...seed, m: marker};
  } else if (path === 'extension_viewer_state' && isMapCaller(stage, role)) {
    // An object from a validated admin/backend is a user map: it patches the viewer's doc.
    mapTarget = 'viewer';
    ok(await s.call('POST', path, 'viewer', {vseed: s.tag}), 'seed viewer');
    body = {[s.userOf('viewer')]: {m: marker}};
    expected = seed;  // the caller's own document is untouched
  } else {
    body = {m: marker, nested: {k: [1, 2]}};
    expected = {...seed, ...body};
  }
  const r = await s.call('PATCH' === method.slice(0, 5) ? 'PATCH' : method, path, role, body);
  if (noUser) {
    needsUser(r);
    return;
  }
  if (!canWrite) {
    refused(r);
    assert.deepEqual(await read(s, path, verifier), seed, 'refused write changed the document');
    return;
  }
  ok(r);
  if (canRead) assert.deepEqual(await read(s, path, role), expected, 'read back by the writer');
  if (!own) assert.deepEqual(await read(s, path, verifier), expected, 'read back by backend');
  if (mapTarget) {
    assert.deepEqual(await read(s, path, mapTarget), {vseed: s.tag, m: marker},
                     'map entry applied to the target user');
  }
  // Who else sees it (and who does not).
  if (path === 'extension_state') {
    assert.deepEqual(await read(s, path, {role: 'viewer', channel: s.otherChannel}), expected,
                     'viewer of another channel reads extension state');
    assert.deepEqual(await read(s, path, 'anonymous'), expected, 'anonymous viewer reads it');
    assert.deepEqual(await read(s, path, {role: 'viewer', other: true}), {},
                     'another extension does not see it');
  } else if (path === 'channel_state') {
    const ch = s.channelOf(role);
    assert.deepEqual(await read(s, path, {role: 'viewer', channel: ch}), expected,
                     'viewer of the same channel reads it');
    assert.deepEqual(await read(s, path, {role: 'viewer', channel: s.otherChannel}), {},
                     'viewer of another channel does not');
    assert.deepEqual(await read(s, path, {role: 'viewer', channel: ch, other: true}), {},
                     'another extension does not');
  } else if (path === 'viewer_state') {
    const me = s.spec(role);
    if (me.kind !== 'anonymous') {
      assert.deepEqual(await read(s, path, {role: 'viewer', user: me.opts.user, opaque: 'Uzz' + s.tag,
                                            channel: me.opts.channel}),
                       expected, 'same user id (other role/opaque) reads the own doc');
    }
    assert.deepEqual(await read(s, path, {role: 'viewer', user: 'someone' + s.tag}), {},
                     'another viewer of the channel does not');
    assert.deepEqual(await read(s, path, {...(typeof role === 'string' ? {role} : role),
                                          channel: s.otherChannel}), {},
                     'the same viewer on another channel does not');
  } else if (path === 'extension_viewer_state') {
    assert.deepEqual(await read(s, path, {role: 'viewer', user: s.userOf(role), channel: s.otherChannel}),
                     expected, 'same user id on another channel reads it');
    assert.deepEqual(await read(s, path, {role: 'viewer', user: 'someone' + s.tag}), {},
                     'another user does not');
  } else if (path === 'extension_hidden_state') {
    assert.deepEqual(await read(s, path, {role: 'backend', channel: s.otherChannel}), expected,
                     'backend on another channel reads hidden state');
    refused(await s.call('GET', path, 'viewer'), 'viewer reads hidden state');
    assert.deepEqual(await read(s, path, {role: 'backend', other: true}), {},
                     'another extension does not see it');
  }
}

for (const [stage, roles] of [['sandbox', SANDBOX_ROLES], ['production', PROD_ROLES]]) {
  describe(`policy matrix (${stage})`, () => {
    for (const path of Object.keys(STORES)) {
      const st = STORES[path];
      for (const method of ['GET', 'POST', 'PATCH-merge', 'PATCH-json']) {
        for (const role of roles) {
          const m = method.startsWith('PATCH') ? 'PATCH' : method;
          const rule = method === 'GET' ? st.read : st.write;
          let outcome = allows(rule, stage, role) ? 'allowed' : '403';
          if (st.needsUser && role === 'anonymous') outcome = '400 user id required';
          const kindNote = method === 'PATCH-merge' && path === 'extension_viewer_state' &&
                           isMapCaller(stage, role) ? ', user map' : '';
          const variant = method.includes('-') ? ` (${method.slice(6)}${kindNote})` : '';
          test(`${m} ${path}${variant} as ${roleLabel(role)} → ${outcome}`,
               () => matrixCell(stage, path, method, role));
        }
      }
    }
  });
}

// ------------------------------------------------------------------------------------------
describe('token sources are interchangeable (sandbox)', () => {
  test('authtoken, medkit token --data-dir and in-process tokens address the same documents', async () => {
    const ch = uid('ch');
    const viaAuth = await sb.sandboxToken({role: 'broadcaster', channel_id: ch});
    const viaCli = mintToken({dataDir: sb.dataDir, role: 'viewer', channel: ch, user: 'cliuser'});
    const viaRoles = SB.as('viewer', {channel: ch, user: 'cliuser', opaque: 'Uother'});
    ok(await sb.request('POST', 'channel_state', {token: viaAuth, body: {hello: ch}}));
    expectStatus(await sb.request('GET', 'channel_state', {token: viaCli}), 200, {hello: ch});
    ok(await sb.request('POST', 'viewer_state', {token: viaCli, body: {mine: 1}}));
    expectStatus(await sb.request('GET', 'viewer_state', {token: viaRoles}), 200, {mine: 1});
    const modTok = await sb.sandboxToken({role: 'moderator', channel_id: ch, user_id: 'mod1'});
    refused(await sb.request('POST', 'channel_state', {token: modTok, body: {x: 1}}), 'moderator');
    const extTok = await sb.sandboxToken({role: 'external', channel_id: ch});
    ok(await sb.request('POST', 'channel_state', {token: extTok, body: {ext: 1}}), 'external');
    const anonTok = await sb.sandboxToken({role: 'viewer', channel_id: ch});
    expectStatus(await sb.request('GET', 'channel_state', {token: anonTok}), 200, {ext: 1});
    needsUser(await sb.request('GET', 'extension_viewer_state', {token: anonTok}));
  });
});

// ------------------------------------------------------------------------------------------
describe('visibility and scoping', () => {
  test('extension_state written by backend is visible to every viewer of every channel of that extension only', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'extension_state', 'backend', {global: 1}));
    for (const who of ['viewer', 'moderator', 'broadcaster', 'admin', 'external', 'anonymous',
                       {role: 'viewer', channel: s.otherChannel},
                       {role: 'broadcaster', channel: s.otherChannel},
                       {role: 'viewer', channel: ''}]) {
      assert.deepEqual(await read(s, 'extension_state', who), {global: 1}, JSON.stringify(who));
    }
    assert.deepEqual(await read(s, 'extension_state', {role: 'viewer', other: true}), {});
  });

  test('production: extension_state written by the owner broadcaster / validated admins is read by viewers of any channel', async () => {
    const s = prodScope();
    for (const writer of ['ownerBroadcaster', 'ownerAdmin', 'listedAdmin']) {
      const v = {by: writer, t: s.tag};
      ok(await s.call('POST', 'extension_state', writer, v), writer);
      assert.deepEqual(await read(s, 'extension_state', 'viewer'), v);
      assert.deepEqual(await read(s, 'extension_state', {role: 'viewer', channel: s.otherChannel}), v);
      assert.deepEqual(await read(s, 'extension_state', {role: 'viewer', other: true}), {});
    }
    // An ordinary broadcaster and a non-validated admin are refused; nothing changes.
    const before = await read(s, 'extension_state', 'viewer');
    refused(await s.call('PATCH', 'extension_state', 'broadcaster', {x: 1}));
    refused(await s.call('POST', 'extension_state', 'admin', {x: 1}));
    refused(await s.call('PATCH', 'extension_state', {role: 'admin', user: undefined}, [{op: 'add', path: '/x', value: 1}]));
    // A broadcaster of a channel whose id merely starts with the owner id is not the owner.
    refused(await s.call('POST', 'extension_state', {role: 'broadcaster', channel: 'owner1x'}, {x: 1}));
    assert.deepEqual(await read(s, 'extension_state', 'viewer'), before);
  });

  test('channel_state written by a broadcaster is read on that channel only', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'channel_state', 'broadcaster', {round: 3}));
    for (const who of ['viewer', 'moderator', 'anonymous', 'admin', 'backend', 'external', 'broadcaster']) {
      assert.deepEqual(await read(s, 'channel_state', who), {round: 3}, who);
    }
    for (const who of [{role: 'viewer', channel: s.otherChannel},
                       {role: 'broadcaster', channel: s.otherChannel},
                       {role: 'viewer', other: true}]) {
      assert.deepEqual(await read(s, 'channel_state', who), {}, JSON.stringify(who));
    }
    // The other channel's broadcaster writes its own channel and does not touch ours.
    ok(await s.call('POST', 'channel_state', {role: 'broadcaster', channel: s.otherChannel}, {round: 9}));
    assert.deepEqual(await read(s, 'channel_state', 'viewer'), {round: 3});
    assert.deepEqual(await read(s, 'channel_state', {role: 'viewer', channel: s.otherChannel}), {round: 9});
    // Admin and backend act on the token's channel.
    ok(await s.call('PATCH', 'channel_state', {role: 'admin', channel: s.otherChannel}, {by: 'admin'}));
    ok(await s.call('PATCH', 'channel_state', {role: 'backend', channel: s.channel}, {by: 'backend'}));
    assert.deepEqual(await read(s, 'channel_state', 'viewer'), {round: 3, by: 'backend'});
    assert.deepEqual(await read(s, 'channel_state', {role: 'viewer', channel: s.otherChannel}),
                     {round: 9, by: 'admin'});
  });

  test('refused channel_state writes (viewer, moderator, anonymous) leave the channel document unchanged', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'channel_state', 'broadcaster', {v: 1}));
    for (const who of ['viewer', 'moderator', 'anonymous']) {
      refused(await s.call('POST', 'channel_state', who, {v: 2}), `POST ${who}`);
      refused(await s.call('PATCH', 'channel_state', who, {v: 2}), `PATCH merge ${who}`);
      refused(await s.call('PATCH', 'channel_state', who, [{op: 'replace', path: '/v', value: 2}]), `PATCH json ${who}`);
    }
    assert.deepEqual(await read(s, 'channel_state', 'broadcaster'), {v: 1});
  });

  test('viewer_state is per (client, channel, viewer key); viewer A is invisible to viewer B', async () => {
    const s = sandboxScope();
    const A = {role: 'viewer', user: 'A' + s.tag};
    const B = {role: 'viewer', user: 'B' + s.tag};
    ok(await s.call('POST', 'viewer_state', A, {a: 1}));
    ok(await s.call('POST', 'viewer_state', B, {b: 1}));
    assert.deepEqual(await read(s, 'viewer_state', A), {a: 1});
    assert.deepEqual(await read(s, 'viewer_state', B), {b: 1});
    // Same user id, different opaque id and role (moderator): same key.
    assert.deepEqual(await read(s, 'viewer_state', {role: 'moderator', user: A.user, opaque: 'Uxyz'}), {a: 1});
    // Same user on another channel, or in another extension: different document.
    assert.deepEqual(await read(s, 'viewer_state', {...A, channel: s.otherChannel}), {});
    assert.deepEqual(await read(s, 'viewer_state', {...A, other: true}), {});
    // The broadcaster and admins read their own viewer documents, not A's.
    assert.deepEqual(await read(s, 'viewer_state', 'broadcaster'), {});
    assert.deepEqual(await read(s, 'viewer_state', 'admin'), {});
    assert.deepEqual(await read(s, 'viewer_state', 'backend'), {});
  });

  test('viewer_state of an anonymous viewer is keyed by opaque_user_id', async () => {
    const s = sandboxScope();
    const anon1 = {role: 'anonymous', opaque: 'A1' + s.tag};
    const anon2 = {role: 'anonymous', opaque: 'A2' + s.tag};
    ok(await s.call('POST', 'viewer_state', anon1, {who: 1}));
    assert.deepEqual(await read(s, 'viewer_state', anon1), {who: 1});
    assert.deepEqual(await read(s, 'viewer_state', anon2), {});
    ok(await s.call('PATCH', 'viewer_state', anon1, [{op: 'add', path: '/more', value: true}]));
    ok(await s.call('PATCH', 'viewer_state', anon2, {who: 2}));
    assert.deepEqual(await read(s, 'viewer_state', anon1), {who: 1, more: true});
    assert.deepEqual(await read(s, 'viewer_state', anon2), {who: 2});
    // A viewer whose user_id is set uses it, not the opaque id.
    const shared = {role: 'viewer', user: 'S' + s.tag, opaque: anon1.opaque};
    assert.deepEqual(await read(s, 'viewer_state', shared), {});
  });

  test('extension_viewer_state is per (client, user_id), across channels and roles', async () => {
    const s = sandboxScope();
    const u = 'U1' + s.tag;
    ok(await s.call('POST', 'extension_viewer_state', {role: 'viewer', user: u}, {lvl: 5}));
    assert.deepEqual(await read(s, 'extension_viewer_state', {role: 'viewer', user: u, channel: s.otherChannel}), {lvl: 5});
    assert.deepEqual(await read(s, 'extension_viewer_state', {role: 'moderator', user: u, channel: 'x' + s.tag}), {lvl: 5});
    assert.deepEqual(await read(s, 'extension_viewer_state', {role: 'viewer', user: u, opaque: 'Udifferent'}), {lvl: 5});
    assert.deepEqual(await read(s, 'extension_viewer_state', {role: 'viewer', user: 'U2' + s.tag}), {});
    assert.deepEqual(await read(s, 'extension_viewer_state', {role: 'viewer', user: u, other: true}), {});
    // Validated admin / backend look it up by id.
    expectStatus(await s.call('GET', `extension_viewer_state?user_ids=${u}`, 'admin'), 200, {[u]: {lvl: 5}});
    expectStatus(await s.call('GET', `extension_viewer_state?userID=${u}`, 'backend'), 200, {lvl: 5});
    expectStatus(await s.call('GET', `extension_viewer_state?userID=${u}`, {role: 'backend', other: true}), 200, {});
  });

  test('extension_viewer_state needs a user id: anonymous GET/POST/PATCH → 400 user id required, nothing written', async () => {
    const s = sandboxScope();
    needsUser(await s.call('GET', 'extension_viewer_state', 'anonymous'));
    needsUser(await s.call('POST', 'extension_viewer_state', 'anonymous', {a: 1}));
    needsUser(await s.call('PATCH', 'extension_viewer_state', 'anonymous', {a: 1}));
    needsUser(await s.call('PATCH', 'extension_viewer_state', 'anonymous', [{op: 'add', path: '/a', value: 1}]));
    // The anonymous viewer's opaque id was not used as a user id.
    expectStatus(await s.call('GET', `extension_viewer_state?user_ids=${s.anonOpaque}`, 'backend'), 200, {});
    // A backend token without user_id has no own extension-viewer document either.
    needsUser(await s.call('POST', 'extension_viewer_state', {role: 'backend', user: undefined}, {a: 1}));
  });

  test('extension_hidden_state: only validated admin/backend read or write; viewers never see it', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'extension_hidden_state', 'backend', {secret: 42}));
    assert.deepEqual(await read(s, 'extension_hidden_state', 'admin'), {secret: 42});
    assert.deepEqual(await read(s, 'extension_hidden_state', 'external'), {secret: 42});
    assert.deepEqual(await read(s, 'extension_hidden_state', {role: 'backend', channel: s.otherChannel}), {secret: 42});
    for (const who of ['viewer', 'moderator', 'broadcaster', 'anonymous']) {
      refused(await s.call('GET', 'extension_hidden_state', who), who);
      refused(await s.call('POST', 'extension_hidden_state', who, {secret: 0}), who);
      refused(await s.call('PATCH', 'extension_hidden_state', who, {secret: 0}), who);
    }
    assert.deepEqual(await read(s, 'extension_hidden_state', 'backend'), {secret: 42});
    // Not part of all_state, and not leaked into extension_state.
    const all = await read(s, 'all_state', 'viewer');
    assert.ok(!JSON.stringify(all).includes('42'), JSON.stringify(all));
    assert.deepEqual(await read(s, 'extension_state', 'viewer'), {});
    assert.deepEqual(await read(s, 'extension_hidden_state', {role: 'backend', other: true}), {});
  });

  test('production: hidden state refuses a non-validated admin and the owner broadcaster', async () => {
    const s = prodScope();
    const v = {hidden: s.tag};
    ok(await s.call('POST', 'extension_hidden_state', 'ownerAdmin', v));
    assert.deepEqual(await read(s, 'extension_hidden_state', 'listedAdmin'), v);
    for (const who of ['admin', 'ownerBroadcaster', 'broadcaster', {role: 'admin', user: undefined}]) {
      refused(await s.call('GET', 'extension_hidden_state', who), JSON.stringify(who));
      refused(await s.call('PATCH', 'extension_hidden_state', who, {hidden: 'x'}), JSON.stringify(who));
    }
    assert.deepEqual(await read(s, 'extension_hidden_state', 'backend'), v);
    assert.deepEqual(await read(s, 'extension_hidden_state', {role: 'backend', other: true}), {});
  });

  test('missing documents read {} for every store', async () => {
    const s = sandboxScope();
    for (const path of ['extension_state', 'channel_state', 'viewer_state', 'extension_viewer_state']) {
      assert.deepEqual(await read(s, path, 'viewer'), {}, path);
    }
    assert.deepEqual(await read(s, 'extension_hidden_state', 'backend'), {});
    assert.deepEqual(await read(s, 'all_state', 'viewer'),
                     {extension: {}, channel: {}, viewer: {}, extension_viewer: {}});
  });

  test('different client ids never see each other\'s data (every store)', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'extension_state', 'backend', {e: 1}));
    ok(await s.call('POST', 'channel_state', 'broadcaster', {c: 1}));
    ok(await s.call('POST', 'viewer_state', 'viewer', {v: 1}));
    ok(await s.call('POST', 'extension_viewer_state', 'viewer', {ev: 1}));
    ok(await s.call('POST', 'extension_hidden_state', 'backend', {h: 1}));
    const o = (role) => ({role, other: true});
    for (const path of ['extension_state', 'channel_state', 'viewer_state', 'extension_viewer_state']) {
      assert.deepEqual(await read(s, path, o('viewer')), {}, path);
    }
    assert.deepEqual(await read(s, 'extension_hidden_state', o('backend')), {});
    assert.deepEqual(await read(s, 'all_state', o('viewer')), {extension: {}, channel: {}, viewer: {}, extension_viewer: {}});
    expectStatus(await s.call('GET', `extension_viewer_state?user_ids=${s.users.viewer}`, o('backend')), 200, {});
    // And writes in the other client do not touch ours.
    ok(await s.call('POST', 'channel_state', o('broadcaster'), {c: 2}));
    ok(await s.call('PATCH', 'extension_viewer_state', o('backend'), {[s.users.viewer]: {ev: 2}}));
    assert.deepEqual(await read(s, 'channel_state', 'viewer'), {c: 1});
    assert.deepEqual(await read(s, 'extension_viewer_state', 'viewer'), {ev: 1});
    assert.deepEqual(await read(s, 'extension_viewer_state', o('viewer')), {ev: 2});
  });

  test('production: prodext and prodext2 are isolated', async () => {
    const s = prodScope();
    ok(await s.call('POST', 'extension_state', 'backend', {p1: s.tag}));
    ok(await s.call('POST', 'extension_state', {role: 'backend', other: true}, {p2: s.tag}));
    assert.deepEqual(await read(s, 'extension_state', 'viewer'), {p1: s.tag});
    assert.deepEqual(await read(s, 'extension_state', {role: 'viewer', other: true}), {p2: s.tag});
    // A prodext token presented under prodext2's client id does not verify.
    const r = await prod.request('GET', 'extension_state', {token: s.tok('viewer'), clientId: PROD_CLIENT2});
    assert.equal(r.status, 401, r.text);
  });
});

// ------------------------------------------------------------------------------------------
describe('all_state', () => {
  test('combines extension, channel, viewer and extension-viewer state for the caller', async () => {
    const s = sandboxScope();
    const u = s.users.viewer;
    ok(await s.call('POST', 'extension_state', 'backend', {e: 1}));
    ok(await s.call('POST', 'channel_state', 'broadcaster', {c: 1}));
    ok(await s.call('POST', 'viewer_state', 'viewer', {v: 1}));
    ok(await s.call('POST', 'extension_viewer_state', 'viewer', {ev: 1}));
    ok(await s.call('POST', 'extension_hidden_state', 'backend', {hidden: 1}));
    assert.deepEqual(await read(s, 'all_state', 'viewer'),
                     {extension: {e: 1}, channel: {c: 1}, viewer: {v: 1}, extension_viewer: {ev: 1}});
    // Same user on another channel: channel and viewer state are that channel's.
    assert.deepEqual(await read(s, 'all_state', {role: 'viewer', user: u, channel: s.otherChannel}),
                     {extension: {e: 1}, channel: {}, viewer: {}, extension_viewer: {ev: 1}});
    // Another viewer of the same channel.
    assert.deepEqual(await read(s, 'all_state', {role: 'viewer', user: 'w' + s.tag}),
                     {extension: {e: 1}, channel: {c: 1}, viewer: {}, extension_viewer: {}});
    // Anonymous viewer: no user id ⇒ extension_viewer {} (no 400), viewer by opaque id.
    ok(await s.call('POST', 'viewer_state', 'anonymous', {anon: true}));
    assert.deepEqual(await read(s, 'all_state', 'anonymous'),
                     {extension: {e: 1}, channel: {c: 1}, viewer: {anon: true}, extension_viewer: {}});
    // Another extension.
    assert.deepEqual(await read(s, 'all_state', {role: 'viewer', other: true}),
                     {extension: {}, channel: {}, viewer: {}, extension_viewer: {}});
  });

  for (const [stage, roles] of [['sandbox', SANDBOX_ROLES], ['production', PROD_ROLES]]) {
    test(`${stage}: every role may GET all_state and gets exactly the four keys`, async () => {
      const s = scopeFor(stage);
      const ext = {e: s.tag};
      ok(await s.call('POST', 'extension_state', 'backend', ext));
      for (const role of roles) {
        ok(await s.call('POST', 'channel_state', {role: 'backend', channel: s.channelOf(role)}, {c: role}));
        const all = await read(s, 'all_state', role);
        assert.deepEqual(Object.keys(all).sort(), ['channel', 'extension', 'extension_viewer', 'viewer'], role);
        assert.deepEqual(all.extension, ext, role);
        assert.deepEqual(all.channel, {c: role}, role);
      }
    });
  }

  test('all_state is read-only (POST/PATCH are not accepted)', async () => {
    const s = sandboxScope();
    for (const m of ['POST', 'PATCH']) {
      const r = await s.call(m, 'all_state', 'admin', {extension: {x: 1}});
      assert.ok(r.status >= 400 && r.status < 500, `${m} all_state → ${r.status} ${r.text}`);
    }
    assert.deepEqual(await read(s, 'extension_state', 'viewer'), {});
  });
});

// ------------------------------------------------------------------------------------------
// PATCH semantics on every writable store, with a writer allowed to write it and whose object
// bodies are merge patches (not user maps).
const WRITERS = {
  extension_state: 'backend',
  channel_state: 'broadcaster',
  viewer_state: 'viewer',
  extension_viewer_state: 'viewer',
  extension_hidden_state: 'backend',
};

for (const [path, writer] of Object.entries(WRITERS)) documentWriteSuites(path, writer, sandboxScope);

// ------------------------------------------------------------------------------------------
describe('write responses', () => {
  test('POST/PATCH response body is exactly {} with application/json', async () => {
    const s = sandboxScope();
    for (const [m, body] of [['POST', {a: 1}], ['PATCH', {b: 2}], ['PATCH', [{op: 'add', path: '/c', value: 3}]]]) {
      const r = await s.call(m, 'channel_state', 'broadcaster', body);
      expectStatus(r, 200, {});
      assert.equal(r.text, '{}');
      assert.match(r.headers.get('content-type'), /^application\/json/);
    }
  });
});

// ------------------------------------------------------------------------------------------
describe('extension_viewer_state multi-user operations', () => {
  for (const [stage, caller] of [['sandbox', 'backend'], ['sandbox', 'admin'], ['sandbox', 'external'],
                                 ['production', 'listedAdmin'], ['production', 'ownerAdmin'],
                                 ['production', 'backend']]) {
    test(`${stage} ${caller}: user map for 3 users (1 array, 2 merge objects); each user reads their own doc`, async () => {
      const s = scopeFor(stage);
      const [u1, u2, u3] = ['1', '2', '3'].map((n) => `u${n}${s.tag}`);
      const V = (u) => ({role: 'viewer', user: u});
      const callerOwn = await read(s, 'extension_viewer_state', caller);
      ok(await s.call('POST', 'extension_viewer_state', V(u1), {list: [1], n: 1}));
      ok(await s.call('POST', 'extension_viewer_state', V(u2), {keep: 'k', drop: 1, o: {a: 1}}));
      ok(await s.call('PATCH', 'extension_viewer_state', caller, {
        [u1]: [{op: 'add', path: '/list/-', value: 2}, {op: 'replace', path: '/n', value: 2}],
        [u2]: {drop: null, o: {b: 2}},
        [u3]: {fresh: {x: [1, 2]}},
      }));
      assert.deepEqual(await read(s, 'extension_viewer_state', V(u1)), {list: [1, 2], n: 2});
      assert.deepEqual(await read(s, 'extension_viewer_state', {...V(u2), channel: s.otherChannel}), {keep: 'k', o: {a: 1, b: 2}});
      assert.deepEqual(await read(s, 'extension_viewer_state', V(u3)), {fresh: {x: [1, 2]}});
      // The caller's own document was not touched.
      assert.deepEqual(await read(s, 'extension_viewer_state', caller), callerOwn);
      // Batch read: only users that have state, unknown ids omitted.
      expectStatus(await s.call('GET', `extension_viewer_state?user_ids=${u1},${u2},${u3},nobody${s.tag}`, caller), 200,
                   {[u1]: {list: [1, 2], n: 2}, [u2]: {keep: 'k', o: {a: 1, b: 2}}, [u3]: {fresh: {x: [1, 2]}}});
      expectStatus(await s.call('GET', `extension_viewer_state?userID=${u3}`, caller), 200, {fresh: {x: [1, 2]}});
      expectStatus(await s.call('GET', `extension_viewer_state?userID=nobody${s.tag}`, caller), 200, {});
    });
  }

  test('a map where one entry\'s patch fails (test mismatch) → 400 and no target changed', async () => {
    const s = sandboxScope();
    const [u1, u2, u3] = ['1', '2', '3'].map((n) => `u${n}${s.tag}`);
    const V = (u) => ({role: 'viewer', user: u});
    ok(await s.call('POST', 'extension_viewer_state', V(u1), {v: 1}));
    ok(await s.call('POST', 'extension_viewer_state', V(u2), {v: 2}));
    const r = await s.call('PATCH', 'extension_viewer_state', 'backend', {
      [u1]: {v: 10},
      [u3]: [{op: 'add', path: '/v', value: 30}],
      [u2]: [{op: 'replace', path: '/v', value: 20}, {op: 'test', path: '/v', value: 999}],
    });
    expectStatus(r, 400);
    assert.deepEqual(await read(s, 'extension_viewer_state', V(u1)), {v: 1});
    assert.deepEqual(await read(s, 'extension_viewer_state', V(u2)), {v: 2});
    assert.deepEqual(await read(s, 'extension_viewer_state', V(u3)), {});
    expectStatus(await s.call('GET', `extension_viewer_state?user_ids=${u1},${u2},${u3}`, 'admin'), 200,
                 {[u1]: {v: 1}, [u2]: {v: 2}});
  });

  test('a map with an entry that is not a patch (number / string / null) or an empty id → 400, nothing changed', async () => {
    const s = sandboxScope();
    const u1 = 'u1' + s.tag;
    ok(await s.call('POST', 'extension_viewer_state', {role: 'viewer', user: u1}, {v: 1}));
    for (const bad of [5, 'str', null, true]) {
      expectStatus(await s.call('PATCH', 'extension_viewer_state', 'backend', {[u1]: {v: 9}, ['x' + s.tag]: bad}), 400,
                   undefined, JSON.stringify(bad));
    }
    expectStatus(await s.call('PATCH', 'extension_viewer_state', 'backend', {[u1]: {v: 9}, '': {v: 9}}), 400);
    assert.deepEqual(await read(s, 'extension_viewer_state', {role: 'viewer', user: u1}), {v: 1});
    expectStatus(await s.call('GET', `extension_viewer_state?user_ids=x${s.tag}`, 'backend'), 200, {});
  });

  test('an empty map is a no-op', async () => {
    const s = sandboxScope();
    ok(await s.call('PATCH', 'extension_viewer_state', 'backend', {}));
    assert.deepEqual(await read(s, 'extension_viewer_state', 'backend'), {});
  });

  test('a viewer sending an object gets merge semantics on their own doc, not map semantics', async () => {
    const s = sandboxScope();
    const me = {role: 'viewer', user: 'me' + s.tag};
    const victim = {role: 'viewer', user: 'victim' + s.tag};
    ok(await s.call('POST', 'extension_viewer_state', victim, {safe: true}));
    ok(await s.call('POST', 'extension_viewer_state', me, {mine: 1}));
    ok(await s.call('PATCH', 'extension_viewer_state', me, {[victim.user]: {safe: false}}));
    assert.deepEqual(await read(s, 'extension_viewer_state', me), {mine: 1, [victim.user]: {safe: false}});
    assert.deepEqual(await read(s, 'extension_viewer_state', victim), {safe: true});
    // Same for moderator and broadcaster.
    for (const who of ['moderator', 'broadcaster']) {
      ok(await s.call('PATCH', 'extension_viewer_state', who, {[victim.user]: {safe: who}}), who);
      assert.deepEqual(await read(s, 'extension_viewer_state', who), {[victim.user]: {safe: who}}, who);
    }
    assert.deepEqual(await read(s, 'extension_viewer_state', victim), {safe: true});
  });

  test('production: a non-validated admin and the owner broadcaster get merge semantics on their own doc', async () => {
    const s = prodScope();
    const victim = {role: 'viewer', user: 'victim' + s.tag};
    ok(await s.call('POST', 'extension_viewer_state', victim, {safe: true}));
    for (const who of ['admin', 'ownerBroadcaster']) {
      ok(await s.call('POST', 'extension_viewer_state', who, {}), who);
      ok(await s.call('PATCH', 'extension_viewer_state', who, {[victim.user]: {safe: false}}), who);
      assert.deepEqual(await read(s, 'extension_viewer_state', who), {[victim.user]: {safe: false}}, who);
    }
    assert.deepEqual(await read(s, 'extension_viewer_state', victim), {safe: true});
  });

  for (const [stage, roles] of [['sandbox', SANDBOX_ROLES], ['production', PROD_ROLES]]) {
    for (const q of ['user_ids', 'userID']) {
      for (const role of roles) {
        const allowed = isMapCaller(stage, role);
        test(`${stage}: GET extension_viewer_state?${q}= as ${roleLabel(role)} → ${allowed ? '200' : '403'}`, async () => {
          const s = scopeFor(stage);
          const u = 'target' + s.tag;
          ok(await s.call('POST', 'extension_viewer_state', {role: 'viewer', user: u}, {t: 1}));
          const r = await s.call('GET', `extension_viewer_state?${q}=${u}`, role);
          if (!allowed) return refused(r);
          expectStatus(r, 200, q === 'user_ids' ? {[u]: {t: 1}} : {t: 1});
        });
      }
    }
  }

  test('user_ids: spaces and empty entries are ignored; a user without state is omitted', async () => {
    const s = sandboxScope();
    const a = 'a' + s.tag;
    const b = 'b' + s.tag;
    ok(await s.call('POST', 'extension_viewer_state', {role: 'viewer', user: a}, {a: 1}));
    ok(await s.call('POST', 'extension_viewer_state', {role: 'viewer', user: b}, {b: 1}));
    expectStatus(await s.call('GET', `extension_viewer_state?user_ids=${a},,%20${b},none${s.tag}`, 'backend'), 200,
                 {[a]: {a: 1}, [b]: {b: 1}});
    expectStatus(await s.call('GET', `extension_viewer_state?user_ids=none${s.tag}`, 'backend'), 200, {});
  });

  test('user_ids: more than 1000 ids → 400 Too many ids specified', async () => {
    const s = sandboxScope();
    const ids = Array.from({length: 1001}, (_, i) => `i${i}`).join(',');
    expectStatus(await s.call('GET', `extension_viewer_state?user_ids=${ids}`, 'backend'), 400,
                 {reason: 'Too many ids specified'});
  });
});

// ------------------------------------------------------------------------------------------
describe('document limits (spec 5.3.2 defaults: 16 KiB per state document)', () => {
  const big = (n) => ({blob: 'x'.repeat(n)});
  for (const [path, writer] of Object.entries(WRITERS)) {
    test(`${path}: a document over 16 KiB → 400 document too large, unchanged (POST and PATCH)`, async () => {
      const s = sandboxScope();
      ok(await s.call('POST', path, writer, big(15 * 1024)));
      expectStatus(await s.call('POST', path, writer, big(17 * 1024)), 400, undefined, 'POST');
      const r = await s.call('PATCH', path, writer, {more: 'y'.repeat(2 * 1024)});
      expectStatus(r, 400, undefined, 'PATCH');
      assert.equal(r.json.reason, 'document too large');
      expectStatus(await s.call('PATCH', path, writer, [{op: 'add', path: '/more', value: 'y'.repeat(2 * 1024)}]), 400);
      assert.deepEqual(await read(s, path, writer), big(15 * 1024));
    });
  }

  test('a body nested deeper than the limit → 400, nothing written', async () => {
    const s = sandboxScope();
    let deep = {};
    for (let i = 0; i < 200; i++) deep = {d: deep};
    expectStatus(await s.call('POST', 'channel_state', 'broadcaster', deep), 400);
    expectStatus(await s.call('PATCH', 'channel_state', 'broadcaster', deep), 400);
    assert.deepEqual(await read(s, 'channel_state', 'viewer'), {});
  });
});

// ------------------------------------------------------------------------------------------
describe('identity details', () => {
  test('production: validated admin is decided by user_id only (opaque id, viewer role or channel do not count)', async () => {
    const s = prodScope();
    const v = {mark: s.tag};
    ok(await s.call('POST', 'extension_state', 'backend', v));
    const impostors = [
      {role: 'admin', user: undefined, opaque: PROD_OWNER},
      {role: 'admin', user: undefined, opaque: `U${PROD_ADMIN}`},
      {role: 'admin', user: 'x' + s.tag, channel: PROD_OWNER},
      {role: 'viewer', user: PROD_OWNER},
      {role: 'moderator', user: PROD_ADMIN},
      {role: 'admin', user: PROD_OWNER.toUpperCase()},
    ];
    for (const who of impostors) {
      refused(await s.call('POST', 'extension_state', who, {x: 1}), JSON.stringify(who));
      refused(await s.call('GET', 'extension_hidden_state', who), JSON.stringify(who));
      refused(await s.call('GET', `extension_viewer_state?user_ids=${PROD_OWNER}`, who), JSON.stringify(who));
    }
    assert.deepEqual(await read(s, 'extension_state', 'viewer'), v);
    // The owner broadcaster is recognised by its channel id.
    ok(await s.call('PATCH', 'extension_state', {role: 'broadcaster', channel: PROD_OWNER, user: PROD_OWNER}, {o: 1}));
    assert.deepEqual(await read(s, 'extension_state', 'viewer'), {...v, o: 1});
  });

  test('numeric id claims address the same documents as their string form', async () => {
    const s = sandboxScope();
    const ch = String(100000 + Math.floor(Math.random() * 1e6));
    const numTok = SB.as('broadcaster', {channel: ch, clientId: s.clientId, extra: {channel_id: Number(ch), user_id: Number(ch)}});
    ok(await s.call('POST', 'channel_state', {token: numTok}, {n: 1}));
    assert.deepEqual(await read(s, 'channel_state', {role: 'viewer', channel: ch}), {n: 1});
    const u = String(200000 + Math.floor(Math.random() * 1e6));
    const numViewer = SB.as('viewer', {channel: ch, user: u, clientId: s.clientId, extra: {user_id: Number(u)}});
    ok(await s.call('POST', 'extension_viewer_state', {token: numViewer}, {ev: 1}));
    assert.deepEqual(await read(s, 'extension_viewer_state', {role: 'viewer', user: u}), {ev: 1});
  });

  test('documents round-trip unicode, escapes and numbers', async () => {
    const s = sandboxScope();
    const raw = '{"u":"é😀\\u0000\\"\\\\/","n":-0.1,"i":-42,"big":9007199254740991,"e":1e300,"arr":[null,true,{}],"":"empty key","a/b~c":1}';
    ok(await s.call('POST', 'channel_state', 'broadcaster', undefined, {rawBody: raw}));
    assert.deepEqual(await read(s, 'channel_state', 'viewer'), JSON.parse(raw));
    ok(await s.call('PATCH', 'channel_state', 'broadcaster', [{op: 'replace', path: '/a~1b~0c', value: 2},
                                                             {op: 'remove', path: '/'}]));
    const want = JSON.parse(raw);
    want['a/b~c'] = 2;
    delete want[''];
    assert.deepEqual(await read(s, 'channel_state', 'viewer'), want);
  });
});

describe('concurrent writes', () => {
  test('100 concurrent JSON Patch appends to one channel document: none lost', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'channel_state', 'broadcaster', {list: []}));
    const N = 100;
    const rs = await Promise.all(Array.from({length: N}, (_, i) =>
      s.call('PATCH', 'channel_state', i % 2 ? 'broadcaster' : 'backend', [{op: 'add', path: '/list/-', value: i}])));
    const done = rs.map((r, i) => (r.status === 200 ? i : null)).filter((i) => i !== null);
    for (const r of rs) assert.ok(r.status === 200 || r.status === 409, `${r.status} ${r.text}`);
    const doc = await read(s, 'channel_state', 'viewer');
    assert.deepEqual([...doc.list].sort((a, b) => a - b), done, 'every acknowledged append is present exactly once');
    assert.ok(done.length >= N * 0.9, `only ${done.length}/${N} appends succeeded`);
  });

  test('concurrent merge patches, user maps and own patches on extension_viewer_state: none lost', async () => {
    const s = sandboxScope();
    const users = ['a', 'b', 'c'].map((x) => x + s.tag);
    const rs = await Promise.all(Array.from({length: 90}, (_, i) => {
      const u = users[i % 3];
      if (i % 2) return s.call('PATCH', 'extension_viewer_state', {role: 'viewer', user: u}, {[`k${i}`]: i});
      return s.call('PATCH', 'extension_viewer_state', 'backend', {[u]: {[`k${i}`]: i}, [users[(i + 1) % 3]]: [{op: 'add', path: `/m${i}`, value: i}]});
    }));
    const want = {[users[0]]: {}, [users[1]]: {}, [users[2]]: {}};
    rs.forEach((r, i) => {
      assert.ok(r.status === 200 || r.status === 409, `${r.status} ${r.text}`);
      if (r.status !== 200) return;
      want[users[i % 3]][`k${i}`] = i;
      if (!(i % 2)) want[users[(i + 1) % 3]][`m${i}`] = i;
    });
    expectStatus(await s.call('GET', `extension_viewer_state?user_ids=${users.join(',')}`, 'backend'), 200, want);
  });

  test('more than 1000 users in one extension_viewer_state map → 400 Too many ids specified', async () => {
    const s = sandboxScope();
    const map = Object.fromEntries(Array.from({length: 1001}, (_, i) => [`k${i}${s.tag}`, {v: i}]));
    expectStatus(await s.call('PATCH', 'extension_viewer_state', 'backend', map), 400, {reason: 'Too many ids specified'});
    expectStatus(await s.call('GET', `extension_viewer_state?user_ids=k0${s.tag}`, 'backend'), 200, {});
  });
});

// ------------------------------------------------------------------------------------------
describe('robustness of stored documents', () => {
  // A number literal that overflows a double (1e999) must not be stored as a value the server
  // later serializes as non-JSON (e.g. the bare word Infinity): every GET of the document, and
  // all_state for every viewer of the channel, would then be unparsable for clients.
  const overflowBodies = [
    ['POST', '{"a":1e999}'],
    ['POST', '{"a":[-1e999]}'],
    ['PATCH', '{"a":1e999}'],
    ['PATCH', '[{"op":"add","path":"/a","value":1e999}]'],
    ['POST', JSON.stringify('{"a":1e999}')],
  ];
  for (const [method, raw] of overflowBodies) {
    test(`${method} ${raw} → 400, or stored so that GET still returns valid JSON`, async () => {
      const s = sandboxScope();
      ok(await s.call('POST', 'channel_state', 'broadcaster', {keep: 1}));
      const r = await s.call(method, 'channel_state', 'broadcaster', undefined, {rawBody: raw});
      assert.ok(r.status === 200 || r.status === 400, `${r.status} ${r.text}`);
      for (const p of ['channel_state', 'all_state']) {
        const g = await s.call('GET', p, 'viewer');
        assert.equal(g.status, 200);
        assert.doesNotThrow(() => JSON.parse(g.text), `GET ${p} after ${method} ${raw} returned invalid JSON: ${g.text}`);
      }
      if (r.status === 400) assert.deepEqual(await read(s, 'channel_state', 'viewer'), {keep: 1});
    });
  }

  // JSON Patch "copy" from the root doubles the working document per op; the size cap is only
  // checked after all ops ran, so a few hundred bytes of patch make the server build a document
  // of gigabytes (any viewer can do this on their own viewer_state). 17 copies of a 1 KB doc
  // reach ~130 MB; a correct server rejects the patch without that allocation.
  test('a JSON Patch that grows the document exponentially (copy from root) is rejected without huge allocations', async (t) => {
    const statusFile = `/proc/${sb.child.pid}/status`;
    const fs = await import('node:fs');
    if (!fs.existsSync(statusFile)) return t.skip('needs /proc');
    const hwm = () => Number(fs.readFileSync(statusFile, 'utf8').match(/VmHWM:\s+(\d+)/)[1]);
    const s = sandboxScope();
    ok(await s.call('POST', 'viewer_state', 'anonymous', {a: 'x'.repeat(1000)}));
    const before = hwm();
    const ops = Array.from({length: 17}, (_, i) => ({op: 'copy', from: '', path: `/c${i}`}));
    const r = await s.call('PATCH', 'viewer_state', 'anonymous', ops);
    expectStatus(r, 400);
    const grownMb = (hwm() - before) / 1024;
    assert.deepEqual(await read(s, 'viewer_state', 'anonymous'), {a: 'x'.repeat(1000)});
    assert.ok(grownMb < 64, `server peak memory grew by ${grownMb.toFixed(0)} MB for a ${JSON.stringify(ops).length}-byte patch`);
  });
});
