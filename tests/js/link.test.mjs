// Game/PIN linking over REST (spec 5.2, 4.2, 12 item 29): gamelink/token and its gamelink/pin
// alias (roles, PIN format, bodies, the 1,024-character Authorization limit), the legacy pin /
// unauthed/pin -> validate_pin flow (also through the real MEDKit client's validateCode,
// pinTokenExists and revokeAllPINCodes), unauthed/validate_pin, pin_token_exists and DELETE pin
// revoking game tokens. The 5-minute PIN expiry is tested on a fake clock in C++
// (link_service_test.cc, link_api_test.cc): the binary has no clock hook. The GameLink side
// (authenticate with the PIN, refresh tokens) is not reachable over REST.
import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {decodeJwt, CLIENT_ID} from './lib/server.mjs';
import {randomSecret, expectStatus, uid, REFUSED, PROD_CLIENT, startBothStages} from './lib/roles.mjs';
import {openUser, closeAllUsers, rejection} from './lib/medkit_client.mjs';

const PIN = /^[A-HJ-KM-NP-Z2-46-9]{6}$/;
const SECRET = randomSecret();
let sb, prod, SB, PR;

let stages;
before(async () => {
  stages = await startBothStages(SECRET);
  ({sb, prod, SB, PR} = stages);
});

after(async () => {
  closeAllUsers();
  await stages?.stop();
});

const broadcaster = (f, channel) => f.as('broadcaster', {channel});
// Objects made in the client's window (another realm) compared as plain JSON.
const plain = (v) => JSON.parse(JSON.stringify(v));
const post = (srv, path, body, opts = {}) => srv.request('POST', path, {body, ...opts});

// POST pin: a fresh {token, pin} pair for the client.
async function pendingPair(srv, identifier = CLIENT_ID, path = 'pin') {
  const r = await post(srv, path, {identifier});
  expectStatus(r, 200, undefined, path);
  assert.deepEqual(Object.keys(r.json).sort(), ['pin', 'token']);
  assert.match(r.json.pin, PIN);
  return r.json;
}

describe('POST gamelink/token (sandbox)', () => {
  test('a broadcaster gets {"token": <PIN>}; every call a new PIN', async () => {
    const ch = uid('ch');
    const seen = new Set();
    for (let i = 0; i < 20; i++) {
      const r = await SB.req('POST', 'gamelink/token', broadcaster(SB, ch), {body: {}});
      expectStatus(r, 200);
      assert.deepEqual(Object.keys(r.json), ['token'], r.text);
      assert.match(r.json.token, PIN);
      seen.add(r.json.token);
    }
    assert.equal(seen.size, 20);
  });

  test('body forms: {}, the double-encoded "{}" of the FPS demo, and no body', async () => {
    const tok = broadcaster(SB, uid('ch'));
    for (const opts of [{rawBody: '{}'}, {rawBody: JSON.stringify(JSON.stringify({}))}, {}]) {
      const r = await SB.req('POST', 'gamelink/token', tok, opts);
      expectStatus(r, 200, undefined, JSON.stringify(opts));
      assert.match(r.json.token, PIN);
    }
  });

  test('gamelink/pin is an alias answering {"pin": P, "token": P}', async () => {
    const r = await SB.req('POST', 'gamelink/pin', broadcaster(SB, uid('ch')), {body: {}});
    expectStatus(r, 200);
    assert.deepEqual(Object.keys(r.json).sort(), ['pin', 'token']);
    assert.match(r.json.pin, PIN);
    assert.equal(r.json.token, r.json.pin);
  });

  test('roles other than broadcaster → 403; no token → 401', async () => {
    for (const role of ['viewer', 'moderator', 'admin', 'backend', 'external', 'anonymous']) {
      const tok = SB.as(role, {channel: 'c1', user: role === 'anonymous' ? undefined : `u-${role}`});
      for (const path of ['gamelink/token', 'gamelink/pin']) {
        expectStatus(await SB.req('POST', path, tok, {body: {}}), 403, REFUSED, `${role} ${path}`);
      }
    }
    const r = await sb.request('POST', 'gamelink/token', {body: {}});
    expectStatus(r, 401);
    assert.equal(typeof r.json.reason, 'string');
  });

  test('Authorization header: 1,024 characters pass, 1,025 → 400 "Bad request"', async () => {
    const ch = uid('ch');
    const header = (n) => `${CLIENT_ID} ${SB.as('broadcaster', {channel: ch, extra: {pad: 'x'.repeat(n)}})}`;
    let pad = 0;
    while (header(pad).length < 1024) pad++;
    if (header(pad).length > 1024) pad--;  // base64 grows in steps; take the longest <= 1024
    const ok = header(pad);
    assert.ok(ok.length <= 1024 && ok.length >= 1022, `length ${ok.length}`);
    const r = await sb.request('POST', 'gamelink/token', {headers: {Authorization: ok}, body: {}});
    expectStatus(r, 200, undefined, `header of ${ok.length}`);
    assert.match(r.json.token, PIN);
    const long = header(pad + 1);
    assert.ok(long.length > 1024);
    for (const path of ['gamelink/token', 'gamelink/pin']) {
      const refused = await sb.request('POST', path, {headers: {Authorization: long}, body: {}});
      expectStatus(refused, 400, undefined, `header of ${long.length}`);
      assert.equal(refused.json.reason, 'Bad request');
    }
    // Other routes take the same long header.
    expectStatus(await sb.request('GET', 'user_info', {headers: {Authorization: long}}), 200);
  });
});

describe('legacy PIN flow (sandbox)', () => {
  test('POST pin and unauthed/pin need no auth; each call gives a new pair', async () => {
    const a = await pendingPair(sb);
    const b = await pendingPair(sb, CLIENT_ID, 'unauthed/pin');
    assert.notEqual(a.pin, b.pin);
    assert.notEqual(a.token, b.token);
    const {payload} = decodeJwt(a.token);
    assert.equal(payload.role, 'broadcaster');
    assert.equal(payload.channel_id, '');
    assert.equal(payload.allowed_stage, 'sandbox');
    assert.equal(payload.extension_id, CLIENT_ID);
    assert.equal(typeof payload.gl, 'string');
    assert.ok(payload.gl.length > 0);
    assert.equal(payload.exp - payload.iat, 7 * 86400);
  });

  test('a pending token authenticates nothing until validate_pin', async () => {
    const {token, pin} = await pendingPair(sb);
    const r = await sb.request('GET', 'user_info', {token});
    expectStatus(r, 401, {reason: 'token is not validated yet',
                          info: 'a broadcaster must enter its PIN with validate_pin first'});
    expectStatus(await sb.request('GET', 'channel_state', {token}), 401);
    expectStatus(await post(sb, 'unauthed/validate_pin', {identifier: CLIENT_ID, pin}), 200, {});
    expectStatus(await post(sb, 'unauthed/validate_pin', {identifier: CLIENT_ID, jwt: token}), 401);
  });

  test('validate_pin binds the token to the broadcaster channel (case-insensitive PIN)', async () => {
    const ch = uid('ch');
    const b = broadcaster(SB, ch);
    const {token, pin} = await pendingPair(sb);
    expectStatus(await SB.req('GET', 'pin_token_exists', b), 200, {exists: false});
    expectStatus(await SB.req('POST', 'validate_pin', b, {body: {pin: pin.toLowerCase()}}), 200, {});
    expectStatus(await sb.request('GET', 'user_info', {token}), 200);
    // The game token is the broadcaster of that channel: it writes channel state.
    expectStatus(await sb.request('POST', 'channel_state', {token, body: {from: 'game'}}), 200, {});
    expectStatus(await SB.req('GET', 'channel_state', b), 200, {from: 'game'});
    expectStatus(await SB.req('GET', 'pin_token_exists', b), 200, {exists: true});
    expectStatus(await post(sb, 'unauthed/validate_pin', {identifier: CLIENT_ID, jwt: token}), 200, {});
    // The PIN was used up.
    expectStatus(await post(sb, 'unauthed/validate_pin', {identifier: CLIENT_ID, pin}), 401,
                 {reason: 'The provided PIN is invalid or expired'});
    expectStatus(await SB.req('POST', 'validate_pin', broadcaster(SB, uid('ch')), {body: {pin}}), 400,
                 {reason: 'The provided PIN is invalid or expired'});
  });

  test('old pairs keep working after new ones are made', async () => {
    const first = await pendingPair(sb);
    const second = await pendingPair(sb);
    const b = broadcaster(SB, uid('ch'));
    expectStatus(await SB.req('POST', 'validate_pin', b, {body: {pin: first.pin}}), 200, {});
    expectStatus(await sb.request('GET', 'user_info', {token: first.token}), 200);
    expectStatus(await sb.request('GET', 'user_info', {token: second.token}), 401);
  });

  test('refusals: roles, bad PINs, bodies, identifiers', async () => {
    const {pin} = await pendingPair(sb);
    for (const role of ['viewer', 'admin', 'backend']) {
      expectStatus(await SB.req('POST', 'validate_pin', SB.as(role, {channel: 'c1', user: 'u1'}), {body: {pin}}),
                   403, REFUSED, role);
    }
    const b = broadcaster(SB, uid('ch'));
    for (const bad of ['', 'ABC', 'OOOOOO', 'ABCDEFG', 12345]) {
      expectStatus(await SB.req('POST', 'validate_pin', b, {body: {pin: bad}}), 400,
                   {reason: 'The provided PIN is invalid or expired'}, `pin ${bad}`);
    }
    // A gamelink/token PIN is not a pending PIN.
    const game = await SB.req('POST', 'gamelink/token', b, {body: {}});
    expectStatus(await SB.req('POST', 'validate_pin', b, {body: {pin: game.json.token}}), 400);
    for (const raw of ['[1]', '"x"', '', '{bad']) {
      expectStatus(await SB.req('POST', 'validate_pin', b, {rawBody: raw}), 400, undefined, raw);
      expectStatus(await sb.request('POST', 'pin', {rawBody: raw}), 400, undefined, raw);
      expectStatus(await sb.request('POST', 'unauthed/validate_pin', {rawBody: raw}), 400, undefined, raw);
    }
    expectStatus(await post(sb, 'pin', {}), 400, {reason: 'identifier required'});
    expectStatus(await post(sb, 'unauthed/validate_pin', {pin}), 400, {reason: 'identifier required'});
    expectStatus(await post(sb, 'unauthed/validate_pin', {identifier: CLIENT_ID}), 400,
                 {reason: 'pin or jwt required'});
    // The PIN belongs to its client.
    expectStatus(await post(sb, 'unauthed/validate_pin', {identifier: 'otherclient', pin}), 401);
    // Still usable after all that.
    expectStatus(await SB.req('POST', 'validate_pin', b, {body: {pin}}), 200, {});
  });

  test('a pending token is bound to its client id', async () => {
    const {token, pin} = await pendingPair(sb);
    expectStatus(await SB.req('POST', 'validate_pin', broadcaster(SB, uid('ch')), {body: {pin}}), 200, {});
    expectStatus(await sb.request('GET', 'user_info', {token, clientId: 'otherclient'}), 401);
    expectStatus(await sb.request('GET', 'user_info', {token}), 200);
  });

  test('DELETE pin revokes every game token of the channel, and only of that channel', async () => {
    const ch = uid('ch'), other = uid('ch');
    const b = broadcaster(SB, ch), bo = broadcaster(SB, other);
    const one = await pendingPair(sb), two = await pendingPair(sb), three = await pendingPair(sb);
    expectStatus(await SB.req('POST', 'validate_pin', b, {body: {pin: one.pin}}), 200, {});
    expectStatus(await SB.req('POST', 'validate_pin', b, {body: {pin: two.pin}}), 200, {});
    expectStatus(await SB.req('POST', 'validate_pin', bo, {body: {pin: three.pin}}), 200, {});
    for (const t of [one, two, three]) {
      expectStatus(await sb.request('GET', 'user_info', {token: t.token}), 200);  // now cached
    }
    const pinBefore = await SB.req('POST', 'gamelink/token', b, {body: {}});
    expectStatus(await SB.req('DELETE', 'pin', b), 200, {});
    for (const t of [one, two]) {
      expectStatus(await sb.request('GET', 'user_info', {token: t.token}), 401, {reason: 'token has been revoked'});
      expectStatus(await sb.request('POST', 'channel_state', {token: t.token, body: {x: 1}}), 401);
      expectStatus(await post(sb, 'unauthed/validate_pin', {identifier: CLIENT_ID, jwt: t.token}), 401);
    }
    expectStatus(await SB.req('GET', 'channel_state', b), 200, {});
    expectStatus(await sb.request('GET', 'user_info', {token: three.token}), 200);
    expectStatus(await SB.req('GET', 'pin_token_exists', b), 200, {exists: false});
    expectStatus(await SB.req('GET', 'pin_token_exists', bo), 200, {exists: true});
    assert.match(pinBefore.json.token, PIN);  // (its redeem is a GameLink matter; revoked too)
    // Roles: only broadcasters revoke or ask.
    for (const role of ['viewer', 'admin', 'backend']) {
      const tok = SB.as(role, {channel: other, user: 'u1'});
      expectStatus(await SB.req('DELETE', 'pin', tok), 403, REFUSED, role);
      expectStatus(await SB.req('GET', 'pin_token_exists', tok), 403, REFUSED, role);
    }
    expectStatus(await sb.request('GET', 'user_info', {token: three.token}), 200);
  });
});

describe('legacy PIN flow through the real MEDKit client', () => {
  test('validateCode, pinTokenExists and revokeAllPINCodes', async () => {
    const ch = `9${Date.now() % 1e8}`;
    const u = await openUser(sb.base, {role: 'broadcaster', channelID: ch, userID: ch});
    try {
      assert.deepEqual(plain(await u.sdk.pinTokenExists()), {exists: false});
      const {token, pin} = await pendingPair(sb);
      assert.deepEqual(plain(await u.sdk.validateCode(pin.toLowerCase())), {});
      assert.deepEqual(plain(await u.sdk.pinTokenExists()), {exists: true});
      expectStatus(await sb.request('GET', 'user_info', {token}), 200);
      const bad = await rejection(u.sdk.validateCode(pin));
      assert.deepEqual(plain(bad), {reason: 'The provided PIN is invalid or expired'});
      assert.deepEqual(plain(await u.sdk.revokeAllPINCodes()), {});
      assert.deepEqual(plain(await u.sdk.pinTokenExists()), {exists: false});
      expectStatus(await sb.request('GET', 'user_info', {token}), 401, {reason: 'token has been revoked'});
    } finally {
      u.close();
    }
  });
});

describe('production stage', () => {
  test('gamelink/token works with a Twitch broadcaster token', async () => {
    const r = await PR.req('POST', 'gamelink/token', broadcaster(PR, uid('ch')), {rawBody: '"{}"'});
    expectStatus(r, 200);
    assert.match(r.json.token, PIN);
  });

  test('pending tokens: unknown extension → 400; issued without allowed_stage; usable after validate_pin', async () => {
    expectStatus(await post(prod, 'pin', {identifier: 'nosuchext'}), 400, {reason: 'No such extension found'});
    const {token, pin} = await pendingPair(prod, PROD_CLIENT);
    const {payload} = decodeJwt(token);
    assert.equal('allowed_stage' in payload, false);
    expectStatus(await prod.request('GET', 'user_info', {token, clientId: PROD_CLIENT}), 401);
    const ch = uid('ch');
    const b = broadcaster(PR, ch);
    expectStatus(await PR.req('POST', 'validate_pin', b, {body: {pin}}), 200, {});
    expectStatus(await prod.request('POST', 'channel_state', {token, clientId: PROD_CLIENT, body: {g: 1}}), 200, {});
    expectStatus(await PR.req('GET', 'channel_state', b), 200, {g: 1});
    expectStatus(await PR.req('DELETE', 'pin', b), 200, {});
    expectStatus(await prod.request('GET', 'user_info', {token, clientId: PROD_CLIENT}), 401,
                 {reason: 'token has been revoked'});
  });

  test('a sandbox pending token is refused by production', async () => {
    const {token} = await pendingPair(sb);
    expectStatus(await prod.request('GET', 'user_info', {token, clientId: PROD_CLIENT}), 401);
  });
});
