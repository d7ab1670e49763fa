// Config stores (spec 4.4, 5.3.1, 5.4, 12 items 1-3, 13-15): config (combined), config/channel,
// config/extension, and the documentation aliases all_config, channel_config, extension_config.
//
// A sandbox server (every admin validated, no registered owner) and a production server
// (extension prodext: owner owner1, administrator admin7; prodext2 for isolation) run for the
// whole file. Each test uses its own scope (fresh channel/user ids; a fresh client id in the
// sandbox). Production extension config is shared by the tests, so they seed a unique value first.
import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer} from './lib/server.mjs';
import {tokenFactory, randomSecret, makeScope, expectStatus, REFUSED, SANDBOX_ROLES, PROD_ROLES,
        PROD_CLIENT, PROD_CLIENT2, prodConfig, documentWriteSuites} from './lib/roles.mjs';

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
async function read(s, path, who) {
  const r = await s.call('GET', path, who);
  expectStatus(r, 200, undefined, `GET ${path} as ${JSON.stringify(who)}`);
  return r.json;
}
const roleLabel = (role) => ({ownerAdmin: 'admin (owner, validated)', listedAdmin: 'admin (listed, validated)',
                              ownerBroadcaster: 'owner broadcaster'}[role] || role);

// ------------------------------------------------------------------------------------------
// Policy (document_service.h):
//   extension config  read any; write validated admin, backend, owner broadcaster
//   channel config    read any (token's channel); write broadcaster, admin, backend;
//                     an object from admin/backend (validated or not) is a channel map.
const EXT_WRITE = {sandbox: ['admin', 'backend', 'external'],
                   production: ['ownerAdmin', 'listedAdmin', 'ownerBroadcaster', 'backend', 'external']};
const CH_WRITE = {sandbox: ['broadcaster', 'admin', 'backend', 'external'],
                  production: ['broadcaster', 'ownerBroadcaster', 'admin', 'ownerAdmin', 'listedAdmin',
                               'backend', 'external']};
const CH_MAP = {sandbox: ['admin', 'backend', 'external'],
                production: ['admin', 'ownerAdmin', 'listedAdmin', 'backend', 'external']};
const PATHS = {
  'config/extension': {scope: 'extension', write: EXT_WRITE},
  'extension_config': {scope: 'extension', write: EXT_WRITE},
  'config/channel': {scope: 'channel', write: CH_WRITE},
  'channel_config': {scope: 'channel', write: CH_WRITE},
};

async function matrixCell(stage, path, method, role) {
  const s = scopeFor(stage);
  const st = PATHS[path];
  const ch = s.channelOf(role);
  const verifier = {role: 'backend', channel: ch};
  const seed = {seed: s.tag};
  ok(await s.call('POST', path, verifier, seed), 'seed');
  const canWrite = st.write[stage].includes(role);
  const marker = `${method}-${role}-${s.tag}`;

  if (method === 'GET') return expectStatus(await s.call('GET', path, role), 200, seed);

  let body;
  let expected;
  let mapTarget = null;
  if (method === 'POST') {
    body = {by: role, m: marker};
    expected = body;
  } else if (method === 'PATCH-json') {
    body = [{op: 'add', path: '/m', value: marker}, {op: 'test', path: '/seed', value: s.tag}];
    expected = {...seed, m: marker};
  } else if (st.scope === 'channel' && CH_MAP[stage].includes(role)) {
    // An object from admin/backend on channel config is a channel map: patch another channel.
    mapTarget = s.otherChannel;
    ok(await s.call('POST', path, {role: 'backend', channel: mapTarget}, {other: s.tag}), 'seed other');
    body = {[mapTarget]: {m: marker}};
    expected = seed;  // the token's own channel is untouched
  } else {
    body = {m: marker, nested: {k: [1, 2]}};
    expected = {...seed, ...body};
  }
  const r = await s.call(method.startsWith('PATCH') ? 'PATCH' : method, path, role, body);
  if (!canWrite) {
    refused(r);
    assert.deepEqual(await read(s, path, verifier), seed, 'refused write changed the document');
    if (mapTarget) {
      assert.deepEqual(await read(s, path, {role: 'backend', channel: mapTarget}), {other: s.tag});
    }
    return;
  }
  ok(r);
  assert.deepEqual(await read(s, path, role), expected, 'read back by the writer');
  assert.deepEqual(await read(s, path, verifier), expected, 'read back by backend');
  if (mapTarget) {
    assert.deepEqual(await read(s, path, {role: 'broadcaster', channel: mapTarget}), {other: s.tag, m: marker},
                     'broadcaster of the map target channel reads the patched config');
  }
  const combined = await read(s, 'config', {role: 'viewer', channel: ch});
  if (st.scope === 'extension') {
    assert.deepEqual(combined.extension, expected, 'config.extension');
    assert.deepEqual(await read(s, path, {role: 'viewer', channel: s.otherChannel}), expected,
                     'viewer of another channel reads extension config');
    assert.deepEqual(await read(s, path, 'anonymous'), expected, 'anonymous viewer reads it');
    assert.deepEqual(await read(s, path, {role: 'viewer', other: true}), {}, 'another extension does not');
  } else {
    assert.deepEqual(combined.channel, expected, 'config.channel');
    assert.deepEqual(await read(s, path, {role: 'viewer', channel: ch}), expected, 'viewer of the channel');
    assert.deepEqual(await read(s, path, {role: 'anonymous', channel: ch}), expected, 'anonymous viewer');
    if (!mapTarget) {
      assert.deepEqual(await read(s, path, {role: 'viewer', channel: s.otherChannel}), {},
                       'viewer of another channel does not');
    }
    assert.deepEqual(await read(s, path, {role: 'viewer', channel: ch, other: true}), {},
                     'another extension does not');
  }
}

for (const [stage, roles] of [['sandbox', SANDBOX_ROLES], ['production', PROD_ROLES]]) {
  describe(`policy matrix (${stage})`, () => {
    for (const path of Object.keys(PATHS)) {
      for (const method of ['GET', 'POST', 'PATCH-merge', 'PATCH-json']) {
        for (const role of roles) {
          const m = method.startsWith('PATCH') ? 'PATCH' : method;
          const outcome = method === 'GET' || PATHS[path].write[stage].includes(role) ? 'allowed' : '403';
          const isMap = method === 'PATCH-merge' && PATHS[path].scope === 'channel' && CH_MAP[stage].includes(role);
          const variant = method.includes('-') ? ` (${method.slice(6)}${isMap ? ', channel map' : ''})` : '';
          test(`${m} ${path}${variant} as ${roleLabel(role)} → ${outcome}`,
               () => matrixCell(stage, path, method, role));
        }
      }
    }
  });
}

// ------------------------------------------------------------------------------------------
describe('combined config and aliases', () => {
  test('GET config = {"channel","extension"}; all_config is the same; missing parts read {}', async () => {
    const s = sandboxScope();
    const empty = {channel: {}, extension: {}};
    expectStatus(await s.call('GET', 'config', 'viewer'), 200, empty);
    ok(await s.call('POST', 'config/extension', 'backend', {theme: 'dark'}));
    expectStatus(await s.call('GET', 'config', 'viewer'), 200, {channel: {}, extension: {theme: 'dark'}});
    ok(await s.call('POST', 'config/channel', 'broadcaster', {skus: {gem: {price: 10, displayName: 'Gem'}}}));
    const want = {channel: {skus: {gem: {price: 10, displayName: 'Gem'}}}, extension: {theme: 'dark'}};
    for (const p of ['config', 'all_config']) {
      for (const who of ['viewer', 'moderator', 'anonymous', 'broadcaster', 'admin', 'backend', 'external']) {
        expectStatus(await s.call('GET', p, who), 200, want, `${p} as ${who}`);
      }
    }
    // Another channel: extension part only. Another extension: nothing.
    expectStatus(await s.call('GET', 'config', {role: 'viewer', channel: s.otherChannel}), 200,
                 {channel: {}, extension: {theme: 'dark'}});
    expectStatus(await s.call('GET', 'all_config', {role: 'viewer', other: true}), 200, empty);
  });

  test('production: every role may GET config', async () => {
    const s = prodScope();
    const ext = {prod: s.tag};
    ok(await s.call('POST', 'config/extension', 'backend', ext));
    for (const role of PROD_ROLES) {
      ok(await s.call('POST', 'config/channel', {role: 'backend', channel: s.channelOf(role)}, {c: role}));
      expectStatus(await s.call('GET', 'config', role), 200, {channel: {c: role}, extension: ext}, role);
    }
  });

  test('aliases address the same documents as the canonical paths (GET, POST, PATCH)', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'channel_config', 'broadcaster', {a: 1}));
    assert.deepEqual(await read(s, 'config/channel', 'viewer'), {a: 1});
    ok(await s.call('PATCH', 'config/channel', 'broadcaster', {b: 2}));
    assert.deepEqual(await read(s, 'channel_config', 'viewer'), {a: 1, b: 2});
    ok(await s.call('PATCH', 'channel_config', 'broadcaster', [{op: 'remove', path: '/a'}]));
    assert.deepEqual(await read(s, 'config/channel', 'viewer'), {b: 2});
    ok(await s.call('POST', 'extension_config', 'admin', {x: 1}));
    assert.deepEqual(await read(s, 'config/extension', 'viewer'), {x: 1});
    ok(await s.call('PATCH', 'config/extension', 'backend', {y: 2}));
    assert.deepEqual(await read(s, 'extension_config', 'viewer'), {x: 1, y: 2});
    assert.deepEqual(await read(s, 'all_config', 'viewer'), {channel: {b: 2}, extension: {x: 1, y: 2}});
    // Trailing slash is tolerated on the canonical path.
    assert.deepEqual(await read(s, 'config/channel/', 'viewer'), {b: 2});
  });

  test('config is read-only at config / all_config (POST/PATCH not accepted)', async () => {
    const s = sandboxScope();
    for (const p of ['config', 'all_config']) {
      for (const m of ['POST', 'PATCH']) {
        const r = await s.call(m, p, 'admin', {channel: {x: 1}, extension: {x: 1}});
        assert.ok(r.status >= 400 && r.status < 500, `${m} ${p} → ${r.status} ${r.text}`);
      }
    }
    assert.deepEqual(await read(s, 'config', 'viewer'), {channel: {}, extension: {}});
  });

  test('config documents are separate from state documents', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'config/channel', 'broadcaster', {cfg: 1}));
    ok(await s.call('POST', 'config/extension', 'backend', {ecfg: 1}));
    ok(await s.call('POST', 'channel_state', 'broadcaster', {st: 1}));
    ok(await s.call('POST', 'extension_state', 'backend', {est: 1}));
    assert.deepEqual(await read(s, 'config', 'viewer'), {channel: {cfg: 1}, extension: {ecfg: 1}});
    assert.deepEqual(await read(s, 'all_state', 'viewer'),
                     {extension: {est: 1}, channel: {st: 1}, viewer: {}, extension_viewer: {}});
    assert.deepEqual(await read(s, 'extension_hidden_state', 'backend'), {});
  });
});

// ------------------------------------------------------------------------------------------
describe('visibility and scoping', () => {
  test('config/extension written by backend is visible to every role on every channel of the extension only', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'config/extension', 'backend', {mode: 'x'}));
    for (const who of ['viewer', 'moderator', 'broadcaster', 'admin', 'external', 'anonymous',
                       {role: 'viewer', channel: s.otherChannel}, {role: 'viewer', channel: ''}]) {
      assert.deepEqual(await read(s, 'config/extension', who), {mode: 'x'}, JSON.stringify(who));
    }
    assert.deepEqual(await read(s, 'config/extension', {role: 'viewer', other: true}), {});
  });

  test('config/extension refusals (viewer, moderator, broadcaster, anonymous) leave it unchanged', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'config/extension', 'admin', {v: 1}));
    for (const who of ['viewer', 'moderator', 'broadcaster', 'anonymous']) {
      refused(await s.call('POST', 'config/extension', who, {v: 2}), who);
      refused(await s.call('PATCH', 'config/extension', who, {v: 2}), who);
      refused(await s.call('PATCH', 'extension_config', who, [{op: 'replace', path: '/v', value: 2}]), who);
    }
    assert.deepEqual(await read(s, 'config/extension', 'viewer'), {v: 1});
  });

  test('production: owner broadcaster and validated admins write extension config; others are refused', async () => {
    const s = prodScope();
    for (const writer of ['ownerBroadcaster', 'ownerAdmin', 'listedAdmin']) {
      const v = {by: writer, t: s.tag};
      ok(await s.call('POST', 'config/extension', writer, v), writer);
      assert.deepEqual(await read(s, 'config/extension', {role: 'viewer', channel: s.otherChannel}), v);
      assert.deepEqual(await read(s, 'config/extension', {role: 'viewer', other: true}), {});
    }
    const before = await read(s, 'config/extension', 'viewer');
    for (const who of ['broadcaster', 'admin', {role: 'admin', user: undefined}, 'viewer', 'moderator',
                       {role: 'broadcaster', channel: 'owner1x'}]) {
      refused(await s.call('POST', 'config/extension', who, {x: 1}), JSON.stringify(who));
      refused(await s.call('PATCH', 'config/extension', who, {x: 1}), JSON.stringify(who));
    }
    assert.deepEqual(await read(s, 'config/extension', 'viewer'), before);
  });

  test('config/channel written by a broadcaster is read on that channel only', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'config/channel', 'broadcaster', {layout: 'left'}));
    for (const who of ['viewer', 'moderator', 'anonymous', 'admin', 'backend', 'external', 'broadcaster']) {
      assert.deepEqual(await read(s, 'config/channel', who), {layout: 'left'}, who);
    }
    for (const who of [{role: 'viewer', channel: s.otherChannel}, {role: 'broadcaster', channel: s.otherChannel},
                       {role: 'viewer', other: true}]) {
      assert.deepEqual(await read(s, 'config/channel', who), {}, JSON.stringify(who));
    }
    ok(await s.call('POST', 'config/channel', {role: 'broadcaster', channel: s.otherChannel}, {layout: 'right'}));
    assert.deepEqual(await read(s, 'config/channel', 'viewer'), {layout: 'left'});
    assert.deepEqual(await read(s, 'channel_config', {role: 'viewer', channel: s.otherChannel}), {layout: 'right'});
  });

  test('config/channel refusals (viewer, moderator, anonymous) leave it unchanged', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'config/channel', 'broadcaster', {v: 1}));
    for (const who of ['viewer', 'moderator', 'anonymous']) {
      refused(await s.call('POST', 'config/channel', who, {v: 2}), who);
      refused(await s.call('PATCH', 'config/channel', who, {v: 2}), who);
      refused(await s.call('PATCH', 'config/channel', who, {[s.channel]: {v: 2}}), who);
      refused(await s.call('PATCH', 'channel_config', who, [{op: 'replace', path: '/v', value: 2}]), who);
    }
    assert.deepEqual(await read(s, 'config/channel', 'broadcaster'), {v: 1});
  });
});

// ------------------------------------------------------------------------------------------
describe('config/channel channel map', () => {
  for (const [stage, caller] of [['sandbox', 'admin'], ['sandbox', 'backend'], ['sandbox', 'external'],
                                 ['production', 'admin'], ['production', 'listedAdmin'],
                                 ['production', 'backend']]) {
    test(`${stage} ${roleLabel(caller)}: map across 2 channels (array + merge) is read back by each channel's broadcaster`, async () => {
      const s = scopeFor(stage);
      const [c1, c2] = [`m1${s.tag}`, `m2${s.tag}`];
      const B = (c) => ({role: 'broadcaster', channel: c});
      ok(await s.call('POST', 'config/channel', B(c1), {skus: {a: {price: 1}}, list: [1]}));
      ok(await s.call('POST', 'config/channel', B(c2), {keep: 1, drop: 2}));
      const own = await read(s, 'config/channel', caller);
      ok(await s.call('PATCH', 'config/channel', caller, {
        [c1]: [{op: 'add', path: '/skus/b', value: {price: 2}}, {op: 'add', path: '/list/-', value: 2}],
        [c2]: {drop: null, nested: {x: 1}},
      }));
      assert.deepEqual(await read(s, 'config/channel', B(c1)), {skus: {a: {price: 1}, b: {price: 2}}, list: [1, 2]});
      assert.deepEqual(await read(s, 'config/channel', B(c2)), {keep: 1, nested: {x: 1}});
      assert.deepEqual(await read(s, 'config', {role: 'viewer', channel: c2}).then((c) => c.channel), {keep: 1, nested: {x: 1}});
      // The token's own channel is not a target.
      assert.deepEqual(await read(s, 'config/channel', caller), own);
      // A map may create a channel's config.
      const c3 = `m3${s.tag}`;
      ok(await s.call('PATCH', 'channel_config', caller, {[c3]: {created: true}}));
      assert.deepEqual(await read(s, 'channel_config', B(c3)), {created: true});
    });
  }

  test('a map where one entry\'s patch fails (test op mismatch) → 400 and no channel changed', async () => {
    const s = sandboxScope();
    const [c1, c2, c3] = ['1', '2', '3'].map((n) => `f${n}${s.tag}`);
    const B = (c) => ({role: 'broadcaster', channel: c});
    ok(await s.call('POST', 'config/channel', B(c1), {v: 1}));
    ok(await s.call('POST', 'config/channel', B(c2), {v: 2}));
    const r = await s.call('PATCH', 'config/channel', 'admin', {
      [c1]: {v: 10},
      [c3]: [{op: 'add', path: '/v', value: 30}],
      [c2]: [{op: 'replace', path: '/v', value: 20}, {op: 'test', path: '/v', value: 999}],
    });
    expectStatus(r, 400);
    assert.deepEqual(await read(s, 'config/channel', B(c1)), {v: 1});
    assert.deepEqual(await read(s, 'config/channel', B(c2)), {v: 2});
    assert.deepEqual(await read(s, 'config/channel', B(c3)), {});
  });

  test('a map with a non-patch entry or an empty channel id → 400, nothing changed', async () => {
    const s = sandboxScope();
    const c1 = `n1${s.tag}`;
    ok(await s.call('POST', 'config/channel', {role: 'broadcaster', channel: c1}, {v: 1}));
    for (const bad of [1, 'x', null, false]) {
      expectStatus(await s.call('PATCH', 'config/channel', 'backend', {[c1]: {v: 9}, [`z${s.tag}`]: bad}), 400,
                   undefined, JSON.stringify(bad));
    }
    expectStatus(await s.call('PATCH', 'config/channel', 'backend', {[c1]: {v: 9}, '': {v: 9}}), 400);
    assert.deepEqual(await read(s, 'config/channel', {role: 'broadcaster', channel: c1}), {v: 1});
    assert.deepEqual(await read(s, 'config/channel', {role: 'broadcaster', channel: `z${s.tag}`}), {});
  });

  test('a broadcaster sending an object gets merge semantics on its own channel, not map semantics', async () => {
    const s = sandboxScope();
    const victim = {role: 'broadcaster', channel: s.otherChannel};
    ok(await s.call('POST', 'config/channel', victim, {safe: true}));
    ok(await s.call('POST', 'config/channel', 'broadcaster', {mine: 1}));
    ok(await s.call('PATCH', 'config/channel', 'broadcaster', {[s.otherChannel]: {safe: false}}));
    assert.deepEqual(await read(s, 'config/channel', 'broadcaster'), {mine: 1, [s.otherChannel]: {safe: false}});
    assert.deepEqual(await read(s, 'config/channel', victim), {safe: true});
  });

  test('production: the owner broadcaster also gets merge semantics on its own channel', async () => {
    const s = prodScope();
    const victim = {role: 'broadcaster', channel: s.otherChannel};
    ok(await s.call('POST', 'config/channel', victim, {safe: true}));
    ok(await s.call('POST', 'config/channel', 'ownerBroadcaster', {}));
    ok(await s.call('PATCH', 'config/channel', 'ownerBroadcaster', {[s.otherChannel]: {safe: false}}));
    assert.deepEqual(await read(s, 'config/channel', 'ownerBroadcaster'), {[s.otherChannel]: {safe: false}});
    assert.deepEqual(await read(s, 'config/channel', victim), {safe: true});
  });

  test('an array from admin/backend patches the token\'s own channel (no map)', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'config/channel', 'broadcaster', {a: 1}));
    ok(await s.call('PATCH', 'config/channel', 'admin', [{op: 'add', path: '/b', value: 2}]));
    ok(await s.call('PATCH', 'config/channel', 'backend', [{op: 'add', path: '/c', value: 3}]));
    assert.deepEqual(await read(s, 'config/channel', 'viewer'), {a: 1, b: 2, c: 3});
  });

  test('a map cannot reach another extension\'s channel config', async () => {
    const s = sandboxScope();
    ok(await s.call('POST', 'config/channel', {role: 'broadcaster', other: true}, {theirs: 1}));
    ok(await s.call('PATCH', 'config/channel', 'backend', {[s.channel]: {mine: 1}}));
    assert.deepEqual(await read(s, 'config/channel', {role: 'viewer', other: true}), {theirs: 1});
    assert.deepEqual(await read(s, 'config/channel', 'viewer'), {mine: 1});
  });

  test('more than 1000 channels in one map → 400 Too many ids specified', async () => {
    const s = sandboxScope();
    const map = Object.fromEntries(Array.from({length: 1001}, (_, i) => [`k${i}${s.tag}`, {v: i}]));
    expectStatus(await s.call('PATCH', 'config/channel', 'backend', map), 400, {reason: 'Too many ids specified'});
    assert.deepEqual(await read(s, 'config/channel', {role: 'viewer', channel: `k0${s.tag}`}), {});
  });
});

// ------------------------------------------------------------------------------------------
// POST / PATCH semantics on both config documents (merge-patch writers: broadcaster on the
// channel config, backend on the extension config) and their aliases.
documentWriteSuites('config/channel', 'broadcaster', sandboxScope);
documentWriteSuites('config/extension', 'backend', sandboxScope);
documentWriteSuites('channel_config', 'broadcaster', sandboxScope);
documentWriteSuites('extension_config', 'admin', sandboxScope);

describe('config limits (spec 5.3.2 defaults: 64 KiB per config document)', () => {
  const big = (n) => ({blob: 'x'.repeat(n)});
  for (const [path, writer] of [['config/channel', 'broadcaster'], ['config/extension', 'backend']]) {
    test(`${path}: 20 KiB (over the state cap) is fine; over 64 KiB → 400 document too large, unchanged`, async () => {
      const s = sandboxScope();
      ok(await s.call('POST', path, writer, big(20 * 1024)));
      assert.deepEqual(await read(s, path, 'viewer'), big(20 * 1024));
      ok(await s.call('POST', path, writer, big(63 * 1024)));
      const r = await s.call('POST', path, writer, big(65 * 1024));
      expectStatus(r, 400);
      assert.equal(r.json.reason, 'document too large');
      expectStatus(await s.call('PATCH', path, writer, {more: 'y'.repeat(2 * 1024)}), 400);
      assert.deepEqual(await read(s, path, 'viewer'), big(63 * 1024));
    });
  }

  test('POST/PATCH config responses are exactly {}', async () => {
    const s = sandboxScope();
    for (const [m, p, who, body] of [['POST', 'config/channel', 'broadcaster', {a: 1}],
                                     ['PATCH', 'config/channel', 'admin', {[s.channel]: {b: 1}}],
                                     ['POST', 'config/extension', 'backend', {a: 1}],
                                     ['PATCH', 'extension_config', 'backend', [{op: 'add', path: '/b', value: 1}]]]) {
      const r = await s.call(m, p, who, body);
      expectStatus(r, 200, {}, `${m} ${p}`);
      assert.equal(r.text, '{}');
    }
    assert.deepEqual(await read(s, 'config', 'viewer'), {channel: {a: 1, b: 1}, extension: {a: 1, b: 1}});
  });
});

describe('robustness of stored config', () => {
  // See state.test.mjs: a number that overflows a double must not make GET return non-JSON.
  for (const [path, writer] of [['config/channel', 'broadcaster'], ['config/extension', 'backend']]) {
    test(`${path}: POST {"a":1e999} → 400, or GET ${path} and GET config still return valid JSON`, async () => {
      const s = sandboxScope();
      ok(await s.call('POST', path, writer, {keep: 1}));
      const r = await s.call('POST', path, writer, undefined, {rawBody: '{"a":1e999}'});
      assert.ok(r.status === 200 || r.status === 400, `${r.status} ${r.text}`);
      for (const p of [path, 'config']) {
        const g = await s.call('GET', p, 'viewer');
        assert.equal(g.status, 200);
        assert.doesNotThrow(() => JSON.parse(g.text), `GET ${p} returned invalid JSON: ${g.text}`);
      }
      if (r.status === 400) assert.deepEqual(await read(s, path, 'viewer'), {keep: 1});
    });
  }
});
