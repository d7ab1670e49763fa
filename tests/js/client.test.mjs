// Real-client compatibility: drives the official @muxy/extensions-js 2.4.18 UMD bundle inside
// jsdom windows (one per simulated user) against a sandbox server, and checks the state and
// config calls end to end (js-client.md "Requests the JS client emitted"; medkit-api.md 3, 4,
// 5.1, 5.3, 5.4).
//
// Users (client id testclientid):
//   bc        broadcaster, channel 100 (user 100)
//   v1, v2    viewers of channel 100 (users 201, 202)
//   vOther    viewer of channel 300 (user 301)
//   v1Else    user 201 again, but watching channel 300
//   admin     admin, channel 100 (user 900)
//   cors      viewer of channel 100 (user 203) whose page is on http://localhost:<port>, i.e. a
//             different origin from the server base http://127.0.0.1:<port> (jsdom preflights)
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer, CLIENT_ID} from './lib/server.mjs';
import {openUser, closeAllUsers, rejection} from './lib/medkit_client.mjs';

let srv;
const U = {};
let anyFailed = false;

// Records failures so the safety exit in after() can use the right exit code.
function check(name, fn) {
  it(name, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      anyFailed = true;
      throw e;
    }
  });
}

// A refused SDK call must reject with the server's parsed JSON body carrying a reason (not a
// network error, not a bare "Server returned status N" string).
async function assertRefused(promise, what) {
  const err = await rejection(promise);
  assert.equal(typeof err, 'object', `${what}: rejection should be the parsed JSON body, got ${String(err)}`);
  assert.ok(err !== null && !(err instanceof Error), `${what}: rejection is an Error: ${err && err.message}`);
  assert.equal(typeof err.reason, 'string', `${what}: body has no string "reason": ${JSON.stringify(err)}`);
  assert.ok(err.reason.length > 0, `${what}: empty reason`);
  return err;
}

// Values produced inside a jsdom window belong to another realm (their Object.prototype differs),
// so strict deepEqual against Node literals always fails; compare plain JSON copies instead.
const plain = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));
async function eq(actualOrPromise, expected, msg) {
  assert.deepEqual(plain(await actualOrPromise), plain(expected), msg);
}

function jwtClaims(jwt) {
  const parts = jwt.split('.');
  assert.equal(parts.length, 3, 'JWT has three segments');
  return {payloadSegment: parts[1], claims: JSON.parse(Buffer.from(parts[1], 'base64').toString('utf8'))};
}

before(async () => {
  try {
    srv = await startServer({stage: 'sandbox', store: 'rocksdb'});
    const base = srv.base;
    const users = {
      bc: {role: 'broadcaster', channelID: '100', userID: '100'},
      v1: {role: 'viewer', channelID: '100', userID: '201'},
      v2: {role: 'viewer', channelID: '100', userID: '202'},
      vOther: {role: 'viewer', channelID: '300', userID: '301'},
      v1Else: {role: 'viewer', channelID: '300', userID: '201'},
      admin: {role: 'admin', channelID: '100', userID: '900'},
      cors: {role: 'viewer', channelID: '100', userID: '203', origin: `http://localhost:${srv.port}`},
    };
    await Promise.all(Object.entries(users).map(async ([k, o]) => {
      U[k] = await openUser(base, {clientID: CLIENT_ID, ...o});
    }));
  } catch (e) {
    anyFailed = true;
    throw e;
  }
});

after(async () => {
  closeAllUsers();
  if (srv) {
    await srv.stop();
    srv.cleanup();
  }
  // Closing the windows clears the SDK's 25-minute re-auth interval, so Node should exit on its
  // own. Safety valve in case something else keeps the loop alive: an unref'd timer never holds
  // the process open, it only fires if something else does.
  setTimeout(() => {
    process.stderr.write('client.test.mjs: event loop still alive after tests; forcing exit\n');
    process.exit(anyFailed ? 1 : 0);
  }, 5000).unref();
});

describe('auth (sandbox authtoken + user_info) for each role', () => {
  for (const [key, role, channel, user] of [['v1', 'viewer', '100', '201'],
                                            ['bc', 'broadcaster', '100', '100'],
                                            ['admin', 'admin', '100', '900']]) {
    check(`${role}: loaded() resolved, role and user info populated`, async () => {
      const {sdk} = U[key];
      const u = sdk.user;
      assert.ok(u, 'sdk.user set after loaded()');
      assert.equal(u.role, role);
      assert.equal(u.channelID, channel);
      assert.equal(u.twitchOpaqueID, 'U' + user);
      assert.equal(u.twitchID, user);
      // user_info: ip_address (last IPv4 octet zeroed), registered, visualization_id, server_time.
      assert.equal(u.ip, '127.0.0.0', 'user.ip from user_info.ip_address, last octet zeroed');
      assert.equal(typeof u.registeredWithMuxy, 'boolean');
      assert.equal(typeof u.visualizationID, 'string');
      assert.ok(Number.isFinite(u.timeOffset), `timeOffset finite: ${u.timeOffset}`);
      assert.ok(Math.abs(u.timeOffset) < 5000, `server_time is ms since epoch (offset ${u.timeOffset} ms)`);
      assert.ok(Math.abs(sdk.getOffsetDate().getTime() - Date.now()) < 5000);
      const fromGetUser = await sdk.getUser();
      assert.equal(fromGetUser.role, role);
      // The JWT the client holds: standard-base64 payload (client decodes with atob), claims.
      const {payloadSegment, claims} = jwtClaims(u.twitchJWT);
      assert.doesNotMatch(payloadSegment, /[-_]/, 'payload segment must avoid base64url-only characters');
      assert.equal(claims.role, role);
      assert.equal(claims.channel_id, channel);
      assert.equal(claims.user_id, user);
      assert.equal(claims.allowed_stage, 'sandbox');
      assert.ok(claims.exp > Date.now() / 1000 + 25 * 60, 'token outlives the 25-minute re-auth period');
    });
  }

  check('broadcaster authtoken forces user_id = channel_id', async () => {
    const b = await openUser(srv.base, {role: 'broadcaster', channelID: '700', userID: '555'});
    try {
      assert.equal(b.sdk.user.role, 'broadcaster');
      assert.equal(b.sdk.user.twitchID, '700');
      assert.equal(jwtClaims(b.sdk.user.twitchJWT).claims.user_id, '700');
    } finally {
      b.close();
    }
  });
});

describe('viewer state', () => {
  check('set/get by the same viewer; invisible to other viewers and other channels', async () => {
    const s1 = {color: 'red', n: 1, nested: {list: [1, 'two', {three: 3}]}, ok: true, nil: null};
    const s2 = {color: 'blue'};
    await eq(U.v1.sdk.setViewerState(s1), {});
    await eq(U.v1.sdk.getViewerState(), s1);
    await eq(U.v2.sdk.getViewerState(), {}, 'viewer B must not see viewer A state');
    await eq(U.v2.sdk.setViewerState(s2), {});
    await eq(U.v2.sdk.getViewerState(), s2);
    await eq(U.v1.sdk.getViewerState(), s1, 'viewer A state untouched by viewer B');
    // viewer_state is per channel: the same user watching channel 300 has its own document.
    await eq(U.v1Else.sdk.getViewerState(), {});
    await eq(U.vOther.sdk.getViewerState(), {});
    // POST replaces wholesale.
    await U.v1.sdk.setViewerState({only: 'this'});
    await eq(U.v1.sdk.getViewerState(), {only: 'this'});
  });

  check('client.patchViewerState merge object (RFC 7386)', async () => {
    const {sdk} = U.v1;
    await sdk.setViewerState({a: {b: 1, c: 2}, arr: [1, 2], keep: 'k', gone: true});
    await eq(sdk.client.patchViewerState(CLIENT_ID, {a: {c: null, d: 3}, arr: [9], gone: null, added: 'n'}), {});
    await eq(sdk.getViewerState(), {a: {b: 1, d: 3}, arr: [9], keep: 'k', added: 'n'});
    await eq(U.v2.sdk.getViewerState(), {color: 'blue'}, 'patch touched only the caller');
  });

  check('RFC 6902 array via client.patchViewerState and sdk.signedRequest', async () => {
    const {sdk} = U.v1;
    await sdk.setViewerState({a: 1, list: [1, 2, 3], obj: {x: 'x'}});
    await sdk.client.patchViewerState(CLIENT_ID, [
      {op: 'test', path: '/a', value: 1},
      {op: 'replace', path: '/a', value: 2},
      {op: 'add', path: '/list/1', value: 'ins'},
      {op: 'remove', path: '/list/0'},
      {op: 'copy', from: '/obj', path: '/copied'},
      {op: 'move', from: '/obj/x', path: '/moved'},
      {op: 'add', path: '/list/-', value: 'end'},
    ]);
    const expected = {a: 2, list: ['ins', 2, 3, 'end'], obj: {}, copied: {x: 'x'}, moved: 'x'};
    await eq(sdk.getViewerState(), expected);
    await sdk.signedRequest('PATCH', 'viewer_state', [{op: 'add', path: '/via', value: 'signedRequest'}]);
    expected.via = 'signedRequest';
    await eq(sdk.getViewerState(), expected);
    // All-or-nothing: a failing `test` op after a replace leaves the document unchanged.
    const err = await rejection(sdk.client.patchViewerState(CLIENT_ID, [
      {op: 'replace', path: '/a', value: 99},
      {op: 'test', path: '/a', value: 'not-this'},
    ]));
    assert.equal(typeof err, 'object', `rejected with JSON body: ${String(err)}`);
    assert.equal(typeof err.reason, 'string');
    await eq(sdk.getViewerState(), expected, 'failed patch must not be partially applied');
  });
});

describe('channel state', () => {
  const cs = {title: 'Round 1', scores: {a: 10, b: 20}, flags: [true, false]};
  check('broadcaster sets; two viewers of the channel read it; other channel does not', async () => {
    await eq(U.bc.sdk.setChannelState(cs), {});
    await eq(U.bc.sdk.getChannelState(), cs);
    await eq(U.v1.sdk.getChannelState(), cs);
    await eq(U.v2.sdk.getChannelState(), cs);
    await eq(U.admin.sdk.getChannelState(), cs, 'admin token on channel 100');
    await eq(U.vOther.sdk.getChannelState(), {}, 'viewer of channel 300 must not see channel 100 state');
    await eq(U.v1Else.sdk.getChannelState(), {}, 'same user on channel 300 sees channel 300 state');
  });

  check('client.patchChannelState merge object by broadcaster; viewers read the merge', async () => {
    await U.bc.sdk.client.patchChannelState(CLIENT_ID, {scores: {b: null, c: 30}, title: 'Round 2'});
    const exp = {title: 'Round 2', scores: {a: 10, c: 30}, flags: [true, false]};
    await eq(U.v1.sdk.getChannelState(), exp);
    await eq(U.v2.sdk.getChannelState(), exp);
    // Reset for later tests.
    await U.bc.sdk.setChannelState(cs);
    await eq(U.v2.sdk.getChannelState(), cs);
  });

  check('viewer setChannelState / patchChannelState refused; data unchanged', async () => {
    await assertRefused(U.v1.sdk.setChannelState({hacked: true}), 'viewer setChannelState');
    await assertRefused(U.v1.sdk.client.patchChannelState(CLIENT_ID, {hacked: true}), 'viewer patchChannelState');
    await assertRefused(U.v1.sdk.client.patchChannelState(CLIENT_ID, [{op: 'add', path: '/hacked', value: true}]),
                        'viewer RFC 6902 patch on channel_state');
    await eq(U.v1.sdk.getChannelState(), cs);
    await eq(U.bc.sdk.getChannelState(), cs);
  });
});

describe('extension state', () => {
  const es = {season: 3, banner: 'hello', tiers: [{id: 1}, {id: 2}]};
  check('admin sets; viewers on any channel and the broadcaster read it', async () => {
    await eq(U.admin.sdk.setExtensionState(es), {});
    await eq(U.admin.sdk.getExtensionState(), es);
    await eq(U.v1.sdk.getExtensionState(), es);
    await eq(U.vOther.sdk.getExtensionState(), es, 'extension state is extension-wide');
    await eq(U.bc.sdk.getExtensionState(), es);
  });

  check('client.patchExtensionState merge object by admin', async () => {
    await U.admin.sdk.client.patchExtensionState(CLIENT_ID, {banner: null, season: 4, extra: {k: 'v'}});
    const exp = {season: 4, tiers: [{id: 1}, {id: 2}], extra: {k: 'v'}};
    await eq(U.v2.sdk.getExtensionState(), exp);
    await eq(U.vOther.sdk.getExtensionState(), exp);
    await U.admin.sdk.setExtensionState(es);
  });

  check('viewer setExtensionState / patchExtensionState refused; data unchanged', async () => {
    await assertRefused(U.v1.sdk.setExtensionState({hacked: true}), 'viewer setExtensionState');
    await assertRefused(U.v1.sdk.client.patchExtensionState(CLIENT_ID, {hacked: true}), 'viewer patchExtensionState');
    await eq(U.v1.sdk.getExtensionState(), es);
    await eq(U.admin.sdk.getExtensionState(), es);
  });
});

describe('extension secret (hidden) state', () => {
  const secret = {apiKey: 's3cr3t-value', rotate: 7};
  check('admin set/get/patch; hidden from all_state', async () => {
    await eq(U.admin.sdk.setExtensionSecretState(secret), {});
    await eq(U.admin.sdk.getExtensionSecretState(), secret);
    await U.admin.sdk.client.patchExtensionSecretState(CLIENT_ID, {rotate: 8, added: [1]});
    await eq(U.admin.sdk.getExtensionSecretState(), {apiKey: 's3cr3t-value', rotate: 8, added: [1]});
    for (const k of ['admin', 'v1', 'bc']) {
      const all = await U[k].sdk.getAllState();
      assert.ok(!JSON.stringify(all).includes('s3cr3t-value'), `${k} all_state leaks hidden state: ${JSON.stringify(all)}`);
    }
    await U.admin.sdk.setExtensionSecretState(secret);
  });

  check('viewer and broadcaster getExtensionSecretState refused; viewer write refused; unchanged', async () => {
    await assertRefused(U.v1.sdk.getExtensionSecretState(), 'viewer getExtensionSecretState');
    await assertRefused(U.bc.sdk.getExtensionSecretState(), 'broadcaster getExtensionSecretState');
    await assertRefused(U.v1.sdk.setExtensionSecretState({apiKey: 'mine'}), 'viewer setExtensionSecretState');
    await assertRefused(U.v1.sdk.client.patchExtensionSecretState(CLIENT_ID, {apiKey: 'mine'}),
                        'viewer patchExtensionSecretState');
    await eq(U.admin.sdk.getExtensionSecretState(), secret);
  });
});

describe('extension viewer state', () => {
  const e1 = {xp: 100, badges: ['a']};
  const e2 = {xp: 5, color: 'green'};
  check('each viewer sets its own; extension-wide per user; admin multiGet returns them', async () => {
    await eq(U.v1.sdk.setExtensionViewerState(e1), {});
    await eq(U.v2.sdk.setExtensionViewerState(e2), {});
    await eq(U.v1.sdk.getExtensionViewerState(), e1);
    await eq(U.v2.sdk.getExtensionViewerState(), e2);
    await eq(U.v1Else.sdk.getExtensionViewerState(), e1, 'same user_id on another channel sees it');
    await eq(U.vOther.sdk.getExtensionViewerState(), {});
    const multi = await U.admin.sdk.multiGetExtensionViewerState(['201', '202', '999']);
    await eq(multi, {'201': e1, '202': e2}, 'users without state are omitted');
    await eq(U.admin.sdk.multiGetExtensionViewerState(['202']), {'202': e2});
  });

  check('admin patchExtensionViewerState user map (merge object and RFC 6902 array)', async () => {
    await U.admin.sdk.patchExtensionViewerState({
      '201': {xp: 150, badges: ['a', 'b'], bonus: {reason: 'admin'}},
      '202': [{op: 'remove', path: '/color'}, {op: 'add', path: '/xp', value: 6}],
    });
    const n1 = {xp: 150, badges: ['a', 'b'], bonus: {reason: 'admin'}};
    const n2 = {xp: 6};
    await eq(U.v1.sdk.getExtensionViewerState(), n1);
    await eq(U.v2.sdk.getExtensionViewerState(), n2);
    await eq(U.admin.sdk.multiGetExtensionViewerState(['201', '202']), {'201': n1, '202': n2});
    // Admin's own extension viewer state was not created by the map.
    await eq(U.admin.sdk.getExtensionViewerState(), {});
    await U.v1.sdk.setExtensionViewerState(e1);
    await U.v2.sdk.setExtensionViewerState(e2);
  });

  check('viewer cannot read or write other users through multi-user forms', async () => {
    await assertRefused(U.v1.sdk.multiGetExtensionViewerState(['201', '202']), 'viewer multiGetExtensionViewerState');
    // A user map from a viewer is at most a merge into the viewer's own document; 202 stays as is.
    try { await U.v1.sdk.patchExtensionViewerState({'202': {xp: 999999}}); } catch { /* refusal also fine */ }
    await eq(U.v2.sdk.getExtensionViewerState(), e2);
    await U.v1.sdk.setExtensionViewerState(e1);
  });

  check('viewer patches its own extension viewer state (merge object)', async () => {
    await U.v2.sdk.client.patchExtensionViewerState(CLIENT_ID, {color: null, level: 2});
    await eq(U.v2.sdk.getExtensionViewerState(), {xp: 5, level: 2});
    await U.v2.sdk.setExtensionViewerState(e2);
  });
});

describe('all_state', () => {
  check('getAllState combines extension, channel, viewer, extension_viewer per caller', async () => {
    const es = {all: 'ext'}, cs = {all: 'chan'}, vs1 = {all: 'v1'}, ev1 = {all: 'ev1'};
    await U.admin.sdk.setExtensionState(es);
    await U.bc.sdk.setChannelState(cs);
    await U.v1.sdk.setViewerState(vs1);
    await U.v1.sdk.setExtensionViewerState(ev1);
    await eq(U.v1.sdk.getAllState(), {extension: es, channel: cs, viewer: vs1, extension_viewer: ev1});
    const v2all = await U.v2.sdk.getAllState();
    await eq(v2all.extension, es);
    await eq(v2all.channel, cs);
    assert.notDeepEqual(plain(v2all.viewer), vs1);
    assert.notDeepEqual(plain(v2all.extension_viewer), ev1);
    const otherAll = await U.vOther.sdk.getAllState();
    await eq(otherAll, {extension: es, channel: {}, viewer: {}, extension_viewer: {}});
  });
});

describe('config', () => {
  const cc = {theme: 'dark', skus: {gem: {price: 10, displayName: 'Gem'}}};
  const ec = {version: 2, features: ['a', 'b']};
  check('broadcaster setChannelConfig, admin setExtensionConfig; read by all via get*/getConfig', async () => {
    await eq(U.bc.sdk.setChannelConfig(cc), {});
    await eq(U.admin.sdk.setExtensionConfig(ec), {});
    for (const k of ['bc', 'v1', 'v2', 'admin']) {
      await eq(U[k].sdk.getChannelConfig(), cc, `${k} getChannelConfig`);
      await eq(U[k].sdk.getExtensionConfig(), ec, `${k} getExtensionConfig`);
      await eq(U[k].sdk.getConfig(), {channel: cc, extension: ec}, `${k} getConfig`);
    }
    await eq(U.vOther.sdk.getChannelConfig(), {}, 'channel 300 has no channel config');
    await eq(U.vOther.sdk.getConfig(), {channel: {}, extension: ec});
  });

  check('admin client.patchChannelConfig with a channelId map', async () => {
    await U.admin.sdk.client.patchChannelConfig(CLIENT_ID, {
      '100': {theme: 'light', skus: {gem: {price: 12}}},
      '300': [{op: 'add', path: '/theme', value: 'blue'}],
    });
    const c100 = {theme: 'light', skus: {gem: {price: 12, displayName: 'Gem'}}};
    await eq(U.v1.sdk.getChannelConfig(), c100);
    await eq(U.vOther.sdk.getChannelConfig(), {theme: 'blue'});
    await eq(U.v1Else.sdk.getChannelConfig(), {theme: 'blue'});
  });

  check('broadcaster client.patchChannelConfig with a plain merge object (own channel)', async () => {
    await U.bc.sdk.client.patchChannelConfig(CLIENT_ID, {theme: 'dark', skus: {gem: {price: 10}}});
    await eq(U.v2.sdk.getChannelConfig(), cc);
    await eq(U.vOther.sdk.getChannelConfig(), {theme: 'blue'}, 'other channel untouched');
  });

  check('admin client.patchExtensionConfig (merge object and RFC 6902 array)', async () => {
    await U.admin.sdk.client.patchExtensionConfig(CLIENT_ID, {version: 3, features: null, mode: 'x'});
    await eq(U.v1.sdk.getExtensionConfig(), {version: 3, mode: 'x'});
    await U.admin.sdk.client.patchExtensionConfig(CLIENT_ID, [{op: 'replace', path: '/mode', value: 'y'}]);
    await eq(U.vOther.sdk.getExtensionConfig(), {version: 3, mode: 'y'});
    await U.admin.sdk.setExtensionConfig(ec);
    await eq(U.v1.sdk.getExtensionConfig(), ec);
  });

  check('viewer config writes refused; data unchanged', async () => {
    await assertRefused(U.v1.sdk.setChannelConfig({theme: 'hacked'}), 'viewer setChannelConfig');
    await assertRefused(U.v1.sdk.client.patchChannelConfig(CLIENT_ID, {theme: 'hacked'}), 'viewer patchChannelConfig');
    await assertRefused(U.v1.sdk.setExtensionConfig({version: -1}), 'viewer setExtensionConfig');
    await assertRefused(U.v1.sdk.client.patchExtensionConfig(CLIENT_ID, {version: -1}), 'viewer patchExtensionConfig');
    await eq(U.v1.sdk.getConfig(), {channel: cc, extension: ec});
  });
});

describe('CORS (page on http://localhost:<port>, server on http://127.0.0.1:<port>)', () => {
  check('the page origin really differs from the server origin', () => {
    assert.notEqual(U.cors.window.location.origin, new URL(srv.base).origin);
    assert.equal(U.cors.sdk.user.role, 'viewer');
  });

  check('cross-origin viewer set/get/patch succeed', async () => {
    const {sdk} = U.cors;
    const s = {cors: true, list: [1]};
    await eq(sdk.setViewerState(s), {});
    await eq(sdk.getViewerState(), s);
    await sdk.client.patchViewerState(CLIENT_ID, {list: [1, 2], more: 'x'});
    await eq(sdk.getViewerState(), {cors: true, list: [1, 2], more: 'x'});
    await sdk.setExtensionViewerState({from: 'cors'});
    await eq(sdk.getExtensionViewerState(), {from: 'cors'});
    await eq(U.admin.sdk.multiGetExtensionViewerState(['203']), {'203': {from: 'cors'}});
    const bcState = await U.bc.sdk.getChannelState();
    await eq(sdk.getChannelState(), bcState);
    await eq((await sdk.getAllState()).viewer, {cors: true, list: [1, 2], more: 'x'});
    assert.deepEqual(U.cors.errors.map(String), [], 'no jsdom (CORS/network) errors in the window');
  });

  check('cross-origin refusal still delivers the JSON reason (ACAO on error responses)', async () => {
    const before = await U.cors.sdk.getChannelState();
    await assertRefused(U.cors.sdk.setChannelState({x: 1}), 'cross-origin viewer setChannelState');
    await eq(U.cors.sdk.getChannelState(), before);
  });

  check('OPTIONS preflight answer (as jsdom sends it)', async () => {
    const origin = `http://localhost:${srv.port}`;
    for (const ep of ['viewer_state', 'extension_viewer_state?user_ids=201,202', 'config/channel', 'all_state']) {
      const r = await srv.request('OPTIONS', ep, {headers: {
        'Origin': origin, 'Access-Control-Request-Method': 'PATCH',
        'Access-Control-Request-Headers': 'authorization,content-type'}});
      assert.ok(r.status >= 200 && r.status < 300, `${ep}: preflight status ${r.status}`);
      const acao = r.headers.get('access-control-allow-origin');
      assert.ok(acao === '*' || acao === origin, `${ep}: ACAO ${acao}`);
      assert.match(r.headers.get('access-control-allow-headers') || '', /authorization/i);
      assert.match(r.headers.get('access-control-allow-methods') || '', /PATCH/);
    }
  });
});

describe('double-encoded (gamelink-style) bodies', () => {
  check('sdk.signedRequest POST viewer_state with a JSON.stringify\'d object', async () => {
    const obj = {dbl: 'yes', n: [1, 2], o: {k: null}};
    await eq(U.v2.sdk.signedRequest('POST', 'viewer_state', JSON.stringify(obj)), {});
    await eq(U.v2.sdk.getViewerState(), obj);
  });

  check('public helpers with JSON.stringify\'d objects (setViewerState, setChannelState, patch)', async () => {
    await U.v2.sdk.setViewerState(JSON.stringify({helper: 1}));
    await eq(U.v2.sdk.getViewerState(), {helper: 1});
    await U.v2.sdk.client.patchViewerState(CLIENT_ID, JSON.stringify({helper: null, p: 2}));
    await eq(U.v2.sdk.getViewerState(), {p: 2});
    await U.bc.sdk.setChannelState(JSON.stringify({dbl: 'channel'}));
    await eq(U.v1.sdk.getChannelState(), {dbl: 'channel'});
  });

  check('double-encoded non-object roots are refused and change nothing', async () => {
    await U.v2.sdk.setViewerState({stay: true});
    await assertRefused(U.v2.sdk.setViewerState(JSON.stringify([1, 2])), 'double-encoded array root');
    await assertRefused(U.v2.sdk.setViewerState('not json at all'), 'JSON string that is not JSON inside');
    await assertRefused(U.v2.sdk.setViewerState([1, 2]), 'array root');
    await eq(U.v2.sdk.getViewerState(), {stay: true});
  });

});
