// Real-client polls: the official @muxy/extensions-js 2.4.18 bundle in jsdom windows (one per
// user) votes with sdk.vote(id, value) and reads with sdk.getVoteData(id); values are checked
// from other users' windows. An admin reads sdk.getFullVoteLogs(id); a broadcaster is refused.
//
// Users (client id testclientid): v1, v2, v3 viewers of channel 100; bc its broadcaster;
// admin (sandbox: validated); vOther a viewer of channel 300.
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer, CLIENT_ID} from './lib/server.mjs';
import {openUser, closeAllUsers, rejection} from './lib/medkit_client.mjs';

let srv;
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

// jsdom values belong to another realm: compare plain JSON copies.
const plain = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));
const specific = (entries) => {
  const a = new Array(32).fill(0);
  for (const [i, n] of Object.entries(entries)) a[Number(i)] = n;
  return a;
};

before(async () => {
  try {
    srv = await startServer({stage: 'sandbox', store: 'rocksdb'});
    const users = {
      v1: {role: 'viewer', channelID: '100', userID: '201'},
      v2: {role: 'viewer', channelID: '100', userID: '202'},
      v3: {role: 'viewer', channelID: '100', userID: '203'},
      bc: {role: 'broadcaster', channelID: '100', userID: '100'},
      admin: {role: 'admin', channelID: '100', userID: '900'},
      vOther: {role: 'viewer', channelID: '300', userID: '301'},
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
    process.stderr.write('polls_client.test.mjs: event loop still alive after tests; forcing exit\n');
    process.exit(anyFailed ? 1 : 0);
  }, 5000).unref();
});

describe('sdk.vote / sdk.getVoteData / sdk.getFullVoteLogs', () => {
  check('votes from several viewers are seen from other windows', async () => {
    const first = plain(await U.v1.sdk.vote('fav', 1));
    assert.equal(first.vote, 1);
    assert.equal(first.count, 1);
    await U.v2.sdk.vote('fav', 3);
    await U.v3.sdk.vote('fav', 3);
    const seen = plain(await U.bc.sdk.getVoteData('fav'));
    assert.deepEqual(seen, {stddev: Math.sqrt(4 / 3), mean: 7 / 3, sum: 7, count: 3,
                            specific: specific({1: 1, 3: 2}), decay: {}});
    assert.equal(plain(await U.v2.sdk.getVoteData('fav')).vote, 3);
    assert.equal(plain(await U.v1.sdk.getVoteData('fav')).vote, 1);
  });

  check('a re-vote replaces the earlier vote for everyone', async () => {
    await U.v1.sdk.vote('fav', 5);
    const seen = plain(await U.v3.sdk.getVoteData('fav'));
    assert.equal(seen.count, 3);
    assert.equal(seen.sum, 11);
    assert.deepEqual(seen.specific, specific({3: 2, 5: 1}));
    assert.equal(seen.vote, 3);
    assert.equal(plain(await U.v1.sdk.getVoteData('fav')).vote, 5);
  });

  check('polls are per channel unless global', async () => {
    assert.equal(plain(await U.vOther.sdk.getVoteData('fav')).count, 0);
    await U.v1.sdk.vote('global-fav', 2);
    await U.vOther.sdk.vote('global-fav', 4);
    const seen = plain(await U.v2.sdk.getVoteData('global-fav'));
    assert.equal(seen.count, 2);
    assert.equal(seen.sum, 6);
  });

  check('admin reads the full vote log; a broadcaster is refused', async () => {
    const logs = plain(await U.admin.sdk.getFullVoteLogs('fav'));
    assert.deepEqual(logs.result.map((e) => [e.identifier, e.opaque, e.value]),
                     [['201', 'U201', 1], ['202', 'U202', 3], ['203', 'U203', 3], ['201', 'U201', 5]]);
    for (const e of logs.result) assert.ok(Math.abs(e.timestamp - Date.now()) < 60000);
    const err = plain(await rejection(U.bc.sdk.getFullVoteLogs('fav')));
    assert.deepEqual(err, {reason: 'The JWT role is not allowed to perform this operation.'});
  });

  check('an out-of-range vote is rejected with the reason', async () => {
    const err = plain(await rejection(U.v2.sdk.vote('fav', 1000)));
    assert.deepEqual(err, {reason: 'Value out of bounds'});
    assert.equal(plain(await U.v2.sdk.getVoteData('fav')).vote, 3);
  });
});
