// Real-client game codes and user listing: a developer backend (a `medkit token` backend
// token) uploads codes and marks viewers; viewers' windows running the official
// @muxy/extensions-js bundle (jsdom) read eligibility, redeem and read their codes back; an
// admin window lists the users who shared their identity (sdk.getExtensionUsers).
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer, mintToken, CLIENT_ID} from './lib/server.mjs';
import {openUser, closeAllUsers, rejection} from './lib/medkit_client.mjs';

let srv, backend;
const U = {};
let anyFailed = false;

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

// Values from a jsdom window belong to another realm: compare plain JSON copies.
const plain = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));
const ZEROS = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

async function api(method, path, body) {
  const r = await srv.request(method, path, {token: backend, body});
  assert.equal(r.status, 200, `${method} ${path}: ${r.text}`);
  return r.json;
}

before(async () => {
  try {
    srv = await startServer({stage: 'sandbox'});
    backend = mintToken({dataDir: srv.dataDir, role: 'backend', channel: '100', user: 'dev1'});
    const users = {
      v1: {role: 'viewer', channelID: '100', userID: '201'},
      v2: {role: 'viewer', channelID: '100', userID: '202'},
      v3: {role: 'viewer', channelID: '300', userID: '203'},
      admin: {role: 'admin', channelID: '100', userID: '900'},
    };
    await Promise.all(Object.entries(users).map(async ([k, o]) => {
      U[k] = await openUser(srv.base, {clientID: CLIENT_ID, ...o});
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
  setTimeout(() => {
    process.stderr.write('codes_client.test.mjs: event loop still alive after tests; forcing exit\n');
    process.exit(anyFailed ? 1 : 0);
  }, 5000).unref();
});

describe('game codes through the SDK', () => {
  check('backend uploads and marks; viewers see eligibility, redeem, and read back', async () => {
    assert.deepEqual(await api('PUT', 'codes', {codes: [['SKIN-A', 'SKIN-B', 'SKIN-C'], ['HAT-1']],
                                                 names: ['Skin', 'Hat']}), {});
    assert.deepEqual(await api('GET', 'codes'), {names: ['Skin', 'Hat']});
    assert.deepEqual(await api('POST', 'codes/mark_from_list',
                               {prize_limits: [2, 1], prizes: [0, 1], users: ['201', '203']}), {});
    assert.deepEqual(await api('POST', 'codes/mark_from_list',
                               {prize_limits: [1], prizes: [0], users: ['202']}), {});

    assert.deepEqual(plain(await U.v1.sdk.getEligibleCodes()), {eligible: [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]});
    assert.deepEqual(plain(await U.v2.sdk.getEligibleCodes()), {eligible: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]});
    assert.deepEqual(plain(await U.admin.sdk.getEligibleCodes()), {eligible: ZEROS});

    assert.deepEqual(plain(await U.v1.sdk.redeemCode(0)), {code: 'SKIN-A', all_prizes: ['SKIN-A']});
    assert.deepEqual(plain(await U.v2.sdk.redeemCode(0)), {code: 'SKIN-B', all_prizes: ['SKIN-B']});
    assert.deepEqual(plain(await U.v1.sdk.redeemCode(0)), {code: 'SKIN-C', all_prizes: ['SKIN-A', 'SKIN-C']});
    assert.deepEqual(plain(await U.v1.sdk.redeemCode(1)), {code: 'HAT-1', all_prizes: ['HAT-1']});
    // v3 (another channel, same extension) is eligible for a hat, but there are none left.
    const err = plain(await rejection(U.v3.sdk.redeemCode(1)));
    assert.equal(err.reason, 'no codes left');
    assert.deepEqual(plain(await U.v3.sdk.getEligibleCodes()), {eligible: [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]});
    const notEligible = plain(await rejection(U.v2.sdk.redeemCode(0)));
    assert.equal(notEligible.reason, 'not eligible');

    assert.deepEqual(plain(await U.v1.sdk.getRedeemedCodes()),
                     {redeemed: [['SKIN-A', 'SKIN-C'], ['HAT-1'], [], [], [], [], [], [], [], []]});
    assert.deepEqual(plain(await U.v2.sdk.getRedeemedCodes()),
                     {redeemed: [['SKIN-B'], [], [], [], [], [], [], [], [], []]});
    assert.deepEqual(plain(await U.v1.sdk.getEligibleCodes()), {eligible: ZEROS});
    assert.deepEqual(plain(await U.v2.sdk.getEligibleCodes()), {eligible: ZEROS});

    assert.deepEqual(await api('DELETE', 'codes'), {distributed: [3, 1]});
  });

  check('a viewer cannot manage codes', async () => {
    const r = await srv.request('GET', 'codes', {token: U.v1.sdk.user.twitchJWT});
    assert.equal(r.status, 403);
  });
});

describe('user_ids through the SDK', () => {
  check('an admin window lists the users who authenticated', async () => {
    const page = plain(await U.admin.sdk.getExtensionUsers());
    assert.equal(page.next, '0');
    const ids = page.results.map((e) => e.twitch_id);
    // The four windows, and the backend's own user id.
    assert.deepEqual(ids, ['201', '202', '203', '900', 'dev1']);
    const refused = plain(await rejection(U.v1.sdk.getExtensionUsers('0')));
    assert.equal(refused.reason, 'The JWT role is not allowed to perform this operation.');
  });
});
