// GameLink (spec 7) against the real binary, with the project's own client
// (lib/gamelink_client.mjs), which checks every server frame against the shapes of section 7.
// Covers: paths, authentication (legacy JWT here; PINs and refresh tokens in link suites),
// requests before authentication, state and config get/set/patch/subscribe with the
// cross-surface effects of 7.7 (REST write -> game push, game write -> REST readers and
// viewers), broadcast, polls with the push cadence of 7.5, datastream order, bad input,
// floods, and shutdown.
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import {WebSocket} from 'undici';
import {startServer, CLIENT_ID} from './lib/server.mjs';
import {tokenFactory} from './lib/roles.mjs';
import {sleep, waitFor, nativeSocket, MEMORY_GROWTH_BOUND_KB} from './lib/streams.mjs';
import {openGame, checkPollResult} from './lib/gamelink_client.mjs';

let srv;
let t;
const games = [];

async function game(channel, {authenticate = true, path} = {}) {
  const g = await openGame(srv, {path});
  games.push(g);
  if (authenticate) {
    const d = await g.authenticate(t.as('broadcaster', {channel}));
    assert.equal(d.twitch_id, channel);
  }
  return g;
}

before(async () => {
  srv = await startServer({stage: 'sandbox', config: {messaging: {rate_burst: 100000, rate_per_minute: 6000000}}});
  t = tokenFactory(srv);
});

after(async () => {
  for (const g of games) {
    assert.deepEqual(g.violations.map(String), [], 'every server frame had the section 7 shape');
    g.close();
  }
  await srv.stop();
  srv.cleanup();
});

describe('connection and authentication', () => {
  it('serves /<version>/<client_id> and /<version>/<projection>/<x.y.z>/<client_id>', async () => {
    for (const path of [`/0.2.0/${CLIENT_ID}`, `/0.2.0/csharp/1.2.3/${CLIENT_ID}`, `/1.0.7/unreal/0.4.2/${CLIENT_ID}`]) {
      const g = await game('c-path', {path});
      const d = await g.ok('get', 'state', {state_id: 'channel'});
      assert.deepEqual(d, {ok: true, state: {}});
    }
    for (const path of ['/0.2/x', '/v1/e/anything', `/0.2.0/a/b/${CLIENT_ID}`]) {
      const ws = new WebSocket(`ws://127.0.0.1:${srv.port}${path}`);
      const outcome = await new Promise((resolve) => {
        ws.onopen = () => resolve('open');
        ws.onerror = () => resolve('error');
      });
      assert.equal(outcome, 'error', path);
    }
  });

  it('answers every request before authentication with a 401 error of the same request id', async () => {
    const g = await game('c-auth', {authenticate: false});
    for (const [action, target, data] of [['get', 'state', {state_id: 'channel'}],
                                          ['subscribe', 'poll', {topic_id: '*'}],
                                          ['broadcast', undefined, {topic: 'x', data: {}}]]) {
      const r = await g.request(action, target, data, {requestId: 42});
      assert.equal(r.meta.request_id, 42);
      assert.equal(r.errors[0].number, 401);
    }
    // subscribe authentication needs nothing.
    assert.deepEqual(await g.ok('subscribe', 'authentication'), {ok: true});
    // A bad token, another client id, no credentials.
    await g.fails('authenticate', undefined, {jwt: 'a.b.c', client_id: CLIENT_ID}, 401);
    await g.fails('authenticate', undefined, {jwt: t.as('broadcaster', {channel: 'c'}), client_id: 'otherclient'}, 400);
    await g.fails('authenticate', undefined, {client_id: CLIENT_ID}, 400);
    // Then the legacy JWT form works, with a response SDKs can read.
    const d = await g.authenticate(t.as('broadcaster', {channel: 'c-auth'}));
    assert.equal(typeof d.jwt, 'string');
    assert.equal(typeof d.refresh, 'string');
    assert.equal(d.twitch_id, 'c-auth');
    assert.equal(d.twitch_name, 'c-auth');
    await g.ok('get', 'state', {state_id: 'channel'});
  });
});

describe('state and config', () => {
  it('set/patch/get channel state, pushed to subscribers (the sender too), read by REST and viewers', async () => {
    const ch = 'c-state';
    const g = await game(ch);
    const other = await game(ch);
    const elsewhere = await game('c-state-2');
    for (const x of [g, other, elsewhere]) await x.ok('subscribe', 'state', {topic_id: 'channel'});
    const viewer = await nativeSocket(srv, t.as('viewer', {channel: ch, user: 'v1'}));

    let d = await g.ok('set', 'state', {state_id: 'channel', state: {hello: 'world'}});
    assert.deepEqual(d, {ok: true, state: {hello: 'world'}});
    d = await g.ok('patch', 'state', {state_id: 'channel', state: [{op: 'add', path: '/health', value: 1000, from: ''}]});
    assert.deepEqual(d, {ok: true, state: {hello: 'world', health: 1000}});
    const pushes = await g.waitUpdates('channel', 2);
    assert.deepEqual(pushes.map((m) => m.data.state), [{hello: 'world'}, {hello: 'world', health: 1000}]);
    await other.waitUpdates('channel', 2);
    const rest = await srv.request('GET', 'channel_state', {token: t.as('viewer', {channel: ch, user: 'v2'})});
    assert.deepEqual(rest.json, {hello: 'world', health: 1000});
    await waitFor('channel_state_update to viewers', () => viewer.messages.length === 2);
    assert.deepEqual(viewer.messages.map((m) => [m.event, m.data]), [
      [`sandbox:${CLIENT_ID}:channel_state_update`, {hello: 'world'}],
      [`sandbox:${CLIENT_ID}:channel_state_update`, {hello: 'world', health: 1000}]]);

    // A REST write reaches the games.
    await srv.request('POST', 'channel_state', {token: t.as('broadcaster', {channel: ch}), body: {round: 3}});
    const after = await g.waitUpdates('channel', 3);
    assert.deepEqual(after[2].data, {state: {round: 3}, topic_id: 'channel'});
    assert.equal(elsewhere.updates('channel').length, 0);

    // The C++ client's remove carries "value": null; the legacy update/set forms (7.6).
    await g.ok('patch', 'state', {state_id: 'channel', state: [{op: 'remove', path: '/round', value: null}]});
    await g.ok('update', 'channel', {state: [{op: 'add', path: '/a', value: 1}]});
    d = await g.ok('get', 'channel');
    assert.deepEqual(d.state, {a: 1});
    await g.fails('patch', 'state', {state_id: 'channel', state: [{op: 'test', path: '/a', value: 2}]}, 400);
    await g.fails('set', 'state', {state_id: 'channel', state: [1, 2]}, 400);
    await g.fails('set', 'state', {state_id: 'everything', state: {}}, 400);
    assert.deepEqual((await g.ok('get', 'state', {state_id: 'channel'})).state, {a: 1});

    // Unsubscribed: nothing more.
    const n = g.updates('channel').length;
    await g.ok('unsubscribe', 'state', {topic_id: 'channel'});
    await other.ok('set', 'state', {state_id: 'channel', state: {b: 2}});
    await other.waitUpdates('channel', n + 1);
    await sleep(200);
    assert.equal(g.updates('channel').length, n);
    viewer.ws.close();
  });

  it('refuses extension state writes from a non-owner broadcaster, keeps the document', async () => {
    const g = await game('c-ext');
    await srv.request('POST', 'extension_state', {token: t.as('admin', {channel: 'x', user: 'adm'}), body: {v: 1}});
    const e = await g.fails('set', 'state', {state_id: 'extension', state: {v: 2}}, 403);
    assert.equal(typeof e.detail, 'string');
    assert.deepEqual((await g.ok('get', 'state', {state_id: 'extension'})).state, {v: 1});
    // An admin's REST write of extension state reaches subscribed games.
    await g.ok('subscribe', 'state', {topic_id: 'extension'});
    await srv.request('POST', 'extension_state', {token: t.as('admin', {channel: 'x', user: 'adm'}), body: {v: 3}});
    const [u] = await g.waitUpdates('extension', 1);
    assert.deepEqual(u.data, {state: {v: 3}, topic_id: 'extension'});
  });

  it('config: REST writes reach the game, game writes reach REST, combined reads', async () => {
    const ch = 'c-config';
    const g = await game(ch);
    await g.ok('subscribe', 'config', {config_id: 'channel'});
    await g.fails('subscribe', 'config', {config_id: 'combined'}, 400);
    const bc = t.as('broadcaster', {channel: ch});
    await srv.request('POST', 'config/channel', {token: bc, body: {skus: {'muxy-bits-50': {price: 10}}}});
    const [u] = await g.waitUpdates('config', 1);
    assert.deepEqual(u.data, {config: {skus: {'muxy-bits-50': {price: 10}}}, config_id: 'channel'});
    assert.deepEqual(await g.ok('set', 'config', {config: {difficulty: 'hard'}}), {ok: true});
    assert.deepEqual(await g.ok('patch', 'config', {config: [{op: 'add', path: '/lives', value: 3}]}), {ok: true});
    const r = await srv.request('GET', 'config/channel', {token: t.as('viewer', {channel: ch, user: 'v'})});
    assert.deepEqual(r.json, {difficulty: 'hard', lives: 3});
    await srv.request('POST', 'config/extension', {token: t.as('admin', {channel: ch, user: 'adm'}), body: {global: true}});
    assert.deepEqual(await g.ok('get', 'config', {config_id: 'combined'}),
                     {config: {channel: {difficulty: 'hard', lives: 3}, extension: {global: true}}, config_id: 'combined'});
    assert.deepEqual(await g.ok('get', 'config', {config_id: 'extension'}), {config: {global: true}, config_id: 'extension'});
    await waitFor('the game\'s own config writes', () => g.updates('config').length === 3);
  });
});

describe('broadcast', () => {
  it('reaches the channel\'s viewers as <topic>; refuses big or non-object data', async () => {
    const ch = 'c-bc';
    const g = await game(ch);
    const viewer = await nativeSocket(srv, t.as('viewer', {channel: ch, user: 'v1'}));
    const elsewhere = await nativeSocket(srv, t.as('viewer', {channel: 'c-bc-2', user: 'v2'}));
    assert.deepEqual(await g.ok('broadcast', undefined, {topic: 'start_poll', data: {poll: 'p1'}}), {ok: true});
    await g.fails('broadcast', undefined, {topic: 'big', data: {blob: 'x'.repeat(9000)}}, 400);
    await g.fails('broadcast', undefined, {topic: 'arr', data: [1, 2]}, 400);
    await g.fails('broadcast', undefined, {data: {}}, 400);
    // Legacy form: a string message, whispered to ids.
    await g.ok('broadcast', undefined, {topic: 'legacy', message: '{"n":1}', ids: ['Uv1']});
    await waitFor('the viewer events', () => viewer.messages.length === 2);
    assert.deepEqual(viewer.messages.map((m) => [m.event, m.data]), [
      [`sandbox:${CLIENT_ID}:start_poll`, {poll: 'p1'}],
      [`sandbox:${CLIENT_ID}:legacy`, {n: 1}]]);
    await sleep(150);
    assert.equal(elsewhere.messages.length, 0);
    viewer.ws.close();
    elsewhere.ws.close();
  });
});

describe('polls', () => {
  const config = (extra) => ({userIDVoting: false, distinctOptionsPerUser: 1, totalVotesPerUser: 1,
                              votesPerOption: 1, disabled: false, startsAt: 0, endsAt: 0,
                              startsIn: 0, endsIn: 0, ...extra});

  it('a delayed poll pushes active (count 0) once, then exactly one expired (count 0)', async () => {
    const g = await game('c-timed');
    await g.ok('subscribe', 'poll', {topic_id: 'timed-poll'});
    const now = Math.floor(Date.now() / 1000);
    await g.ok('create', 'poll', {poll_id: 'timed-poll', prompt: 'Now?', options: ['yes'],
                                  config: config({startsAt: now + 2, endsAt: now + 4}), user_data: null});
    const pushes = await g.waitUpdates('poll', 2, 12000);
    await sleep(1500);
    const all = g.updates('poll');
    assert.deepEqual(all.map((m) => [m.data.poll.status, m.data.count]), [['active', 0], ['expired', 0]]);
    assert.deepEqual(all[0].data.poll, {poll_id: 'timed-poll', prompt: 'Now?', options: ['yes'],
                                        status: 'active', user_data: {}});
    assert.deepEqual(all[0].data.results, [0]);
    assert.equal(pushes.length, 2);
  });

  it('no push at create; REST votes pushed at most once a second; one expired on stop; none after', async () => {
    const ch = 'c-votes';
    const g = await game(ch);
    await g.ok('subscribe', 'poll', {topic_id: '*'});
    await g.ok('create', 'poll', {poll_id: 'color', prompt: 'Favourite?', options: ['Blue', 'Red'],
                                  config: config({}), user_data: {round: 1}});
    await sleep(1500);
    assert.equal(g.updates('poll').length, 0, 'no push at create');
    let d = await g.ok('get', 'poll', {poll_id: 'color'});
    checkPollResult(d);
    assert.deepEqual([d.poll.status, d.count, d.results, d.poll.user_data], ['active', 0, [0, 0], {round: 1}]);

    // Three viewers vote over REST in a burst.
    for (const [user, value] of [['a', 0], ['b', 1], ['c', 1]]) {
      const r = await srv.request('POST', 'vote?id=color', {token: t.as('viewer', {channel: ch, user}), body: {value}});
      assert.equal(r.status, 200, r.text);
    }
    await waitFor('a push with all three votes', () => g.updates('poll').some((m) => m.data.count === 3));
    const votes = g.updates('poll');
    assert.ok(votes.length <= 3, `${votes.length} pushes for 3 votes`);
    const last = votes[votes.length - 1].data;
    assert.deepEqual([last.poll.status, last.count, last.sum, last.results], ['active', 3, 2, [1, 2]]);
    for (let i = 1; i < votes.length; i++) {
      assert.ok(votes[i].meta.timestamp - votes[i - 1].meta.timestamp >= 900, 'at most one push a second');
    }
    // REST sees the same poll.
    const rest = await srv.request('GET', 'vote?id=color', {token: t.as('viewer', {channel: ch, user: 'z'})});
    assert.deepEqual([rest.json.count, rest.json.sum], [3, 2]);

    // Stop it: exactly one expired push; stopping again pushes nothing.
    const before = g.updates('poll').length;
    await g.ok('reconfigure', 'poll', {poll_id: 'color', config: {endsAt: -1}});
    await waitFor('the expired push', () => g.updates('poll').length === before + 1);
    await g.ok('reconfigure', 'poll', {poll_id: 'color', config: {endsAt: -1}});
    await sleep(1500);
    const end = g.updates('poll');
    assert.equal(end.length, before + 1);
    assert.equal(end[end.length - 1].data.poll.status, 'expired');
    assert.equal(end[end.length - 1].data.count, 3);
    const closed = await srv.request('POST', 'vote?id=color', {token: t.as('viewer', {channel: ch, user: 'late'}), body: {value: 0}});
    assert.equal(closed.status, 400);

    // Delete: gone, and no more pushes.
    await g.ok('delete', 'poll', {poll_id: 'color'});
    d = await g.ok('get', 'poll', {poll_id: 'color'});
    assert.equal(d.count, 0);
    await sleep(1200);
    assert.equal(g.updates('poll').length, before + 1);
  });

  it('refuses bad polls with errors', async () => {
    const g = await game('c-badpoll');
    await g.fails('create', 'poll', {poll_id: 'bad.id', prompt: 'x', options: ['a']}, 400);
    await g.fails('create', 'poll', {poll_id: 'p', prompt: 'x'.repeat(300), options: ['a']}, 400);
    await g.fails('create', 'poll', {poll_id: 'p', prompt: 'x', options: Array(40).fill('o')}, 400);
    await g.fails('reconfigure', 'poll', {poll_id: 'p'}, 400);
    await g.fails('subscribe', 'poll', {}, 400);
  });
});

describe('datastream', () => {
  it('delivers REST datastream posts to the game in order', async () => {
    const ch = 'c-ds';
    const g = await game(ch);
    const other = await game('c-ds-2');
    await g.ok('subscribe', 'datastream', {topic_id: ''});
    await other.ok('subscribe', 'datastream', {topic_id: ''});
    const viewer = t.as('viewer', {channel: ch, user: 'v'});
    for (let i = 0; i < 6; i++) {
      const r = await srv.request('POST', 'datastream', {token: viewer, body: {spawnMonsterType: `m${i}`}});
      assert.equal(r.status, 200);
    }
    await g.waitUpdates('datastream', 6);
    const events = g.updates('datastream').flatMap((m) => m.data.events);
    assert.deepEqual(events.map((e) => e.event), [0, 1, 2, 3, 4, 5].map((i) => ({spawnMonsterType: `m${i}`})));
    await sleep(100);
    assert.equal(other.updates('datastream').length, 0);
    await g.ok('unsubscribe', 'datastream', {topic_id: ''});
    await srv.request('POST', 'datastream', {token: viewer, body: {late: true}});
    await sleep(200);
    assert.equal(g.updates('datastream').length, 6);
  });
});

describe('PIN linking, refresh and reconnect', () => {
  async function pinFor(channel) {
    const r = await srv.request('POST', 'gamelink/token', {token: t.as('broadcaster', {channel}),
                                                           rawBody: JSON.stringify(JSON.stringify({}))});
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.token, /^[A-HJ-KM-NP-Z2-46-9]{6}$/);
    return r.json.token;
  }

  it('authenticates with a PIN once, rotates the refresh token, and replays subscriptions on a new socket', async () => {
    const ch = 'c-pin';
    const pin = await pinFor(ch);
    const g = await game(ch, {authenticate: false});
    const d = await g.ok('authenticate', undefined, {pin: pin.toLowerCase(), client_id: CLIENT_ID, game_id: 'Mystery Fun House'});
    assert.deepEqual([d.twitch_id, d.twitch_name], [ch, ch]);
    assert.ok(d.refresh.length >= 16);
    // The access token works on REST as the channel's broadcaster.
    const rest = await srv.request('POST', 'channel_state', {token: d.jwt, body: {linked: true}});
    assert.equal(rest.status, 200, rest.text);
    // The PIN is single use.
    const again = await openGame(srv);
    games.push(again);
    const e = await again.fails('authenticate', undefined, {pin, client_id: CLIENT_ID}, 400);
    assert.equal(e.detail, 'The provided PIN is invalid or expired');

    // Reconnect as the SDK does: a new socket, authenticate with the refresh token (request
    // id 65535), then replay the subscriptions.
    await g.ok('subscribe', 'state', {topic_id: 'channel'});
    g.close();
    const g2 = await game(ch, {authenticate: false});
    const r2 = await g2.request('authenticate', undefined, {refresh: d.refresh, client_id: CLIENT_ID}, {requestId: 65535});
    assert.equal(r2.meta.request_id, 65535);
    assert.ok(r2.data, JSON.stringify(r2.errors));
    assert.notEqual(r2.data.refresh, d.refresh, 'rotated');
    await g2.ok('subscribe', 'state', {topic_id: 'channel'});
    await srv.request('POST', 'channel_state', {token: t.as('broadcaster', {channel: ch}), body: {round: 2}});
    const [u] = await g2.waitUpdates('channel', 1);
    assert.deepEqual(u.data.state, {round: 2});
    // The old refresh token no longer works.
    const g3 = await game(ch, {authenticate: false});
    const e3 = await g3.fails('authenticate', undefined, {refresh: d.refresh, client_id: CLIENT_ID}, 400);
    assert.equal(e3.detail, 'Invalid refresh token');

    // DELETE pin revokes the game's tokens: REST refuses the access token, and the refresh
    // token is gone.
    const del = await srv.request('DELETE', 'pin', {token: t.as('broadcaster', {channel: ch})});
    assert.equal(del.status, 200);
    const refused = await srv.request('GET', 'channel_state', {token: r2.data.jwt});
    assert.equal(refused.status, 401);
    await g3.fails('authenticate', undefined, {refresh: r2.data.refresh, client_id: CLIENT_ID}, 400);
  });
});

describe('purchases', () => {
  it('a REST purchase reaches subscribed games; get, validate and refund', async () => {
    const ch = 'c-buy';
    const g = await game(ch);
    const elsewhere = await game('c-buy-2');
    await g.ok('subscribe', 'twitchPurchaseBits', {sku: 'muxy-bits-50'});
    await elsewhere.ok('subscribe', 'twitchPurchaseBits', {sku: '*'});
    const viewer = t.as('viewer', {channel: ch, user: 'buyer'});
    const body = (id, sku) => ({transactionId: id, product: {sku, displayName: 'Fifty', cost: {amount: 50, type: 'bits'}},
                                userId: 'buyer', displayName: 'Buyer', initiator: 'current_user',
                                transactionReceipt: 'dev-receipt'});
    let r = await srv.request('POST', 'bits/transactions', {token: viewer, body: body('tx-1', 'muxy-bits-50')});
    assert.equal(r.status, 201, r.text);
    r = await srv.request('POST', 'bits/transactions', {token: viewer, body: body('tx-2', 'other-sku')});
    assert.equal(r.status, 201, r.text);
    const [u] = await g.waitUpdates('twitchPurchaseBits', 1);
    assert.equal(u.data.id, 'tx-1');
    assert.equal(u.data.sku, 'muxy-bits-50');
    assert.equal(u.data.cost, 50);
    assert.equal(u.data.currency, 'bits');
    await sleep(200);
    assert.equal(g.updates('twitchPurchaseBits').length, 1, 'only the subscribed SKU');
    assert.equal(elsewhere.updates('twitchPurchaseBits').length, 0, 'only the channel');

    let list = await g.ok('get', 'transaction', {sku: '*'});
    assert.deepEqual(list.transactions.map((x) => x.id), ['tx-1', 'tx-2']);
    await g.ok('validate', 'transaction', {transaction_id: u.data.muxy_id, details: 'granted'});
    list = await g.ok('get', 'transaction', {sku: '*'});
    assert.deepEqual(list.transactions.map((x) => x.id), ['tx-2']);
    await g.fails('validate', 'transaction', {transaction_id: 'no-such-id', details: ''}, 404);
    await g.ok('refund', 'transaction', {sku: 'other-sku', user_id: 'buyer'});
    await g.fails('refund', 'transaction', {sku: 'other-sku'}, 400);
  });
});

describe('matches, match polls, matchmaking', () => {
  it('groups channels, broadcasts to them, and pushes MatchPollResult with every channel', async () => {
    const g = await game('m-host');
    const viewers = await Promise.all(['m1', 'm2', 'm3'].map((c) => nativeSocket(srv, t.as('viewer', {channel: c, user: 'v'}))));
    const outsider = await nativeSocket(srv, t.as('viewer', {channel: 'm4', user: 'v'}));
    await g.fails('add_channels', 'match', {id: 'no-such-match', channel_ids: ['m1']}, 404);
    await g.ok('create', 'match', {id: 'cool-match'});
    await g.ok('add_channels', 'match', {id: 'cool-match', channel_ids: ['m1', 'm2', 'm3', 'm4']});
    await g.ok('remove_channels', 'match', {id: 'cool-match', channel_ids: ['m4']});
    await g.ok('keepalive', 'match', {id: 'cool-match'});
    await g.ok('broadcast', 'match', {match_id: 'cool-match', topic: 'round', data: {n: 1}});
    await waitFor('the match broadcast', () => viewers.every((v) => v.messages.length === 1));
    for (const v of viewers) assert.deepEqual(v.messages[0], {event: `sandbox:${CLIENT_ID}:round`, data: {n: 1}});
    await sleep(150);
    assert.equal(outsider.messages.length, 0);

    await g.ok('subscribe', 'match_poll', {topic_id: 'cool-match'});
    await g.ok('create', 'match_poll', {id: 'cool-match', poll: {poll_id: 'what-to-eat', prompt: 'Eat?',
                                                                 options: ['a', 'b'], config: {}, user_data: null}});
    await sleep(1200);
    assert.equal(g.updates('match_poll').length, 0, 'no push at create');
    // Viewers of two of the three channels vote over REST.
    for (const [c, user, value] of [['m1', 'a', 1], ['m1', 'b', 1], ['m2', 'c', 0]]) {
      const r = await srv.request('POST', 'vote?id=what-to-eat', {token: t.as('viewer', {channel: c, user}), body: {value}});
      assert.equal(r.status, 200, r.text);
    }
    await waitFor('a match poll push with 3 votes', () => g.updates('match_poll').some((m) => m.data.overall.count === 3));
    const d = g.updates('match_poll').at(-1).data;
    assert.equal(d.match_id, 'cool-match');
    assert.equal(d.poll_id, 'what-to-eat');
    assert.equal(d.overall.results.length, 32);
    assert.deepEqual([d.overall.count, d.overall.sum, d.overall.results[0], d.overall.results[1]], [3, 2, 1, 2]);
    assert.deepEqual(Object.keys(d.results).sort(), ['m1', 'm2', 'm3'], 'every channel of the match');
    assert.deepEqual([d.results.m1.count, d.results.m2.count, d.results.m3.count], [2, 1, 0]);
    assert.equal(d.results.m3.results.length, 32);
    const get = await g.ok('get', 'match_poll', {id: 'cool-match', poll_id: 'what-to-eat'});
    assert.deepEqual(get.overall, d.overall);
    // Stop: one expired push for the match.
    const n = g.updates('match_poll').length;
    await g.ok('reconfigure', 'match_poll', {id: 'cool-match', poll_id: 'what-to-eat', config: {endsAt: -1}});
    await waitFor('the expired match push', () => g.updates('match_poll').length === n + 1);
    assert.equal(g.updates('match_poll').at(-1).data.overall.status, 'expired');
    await g.ok('delete', 'match_poll', {id: 'cool-match', poll_id: 'what-to-eat'});
    await g.fails('get', 'match_poll', {id: 'cool-match', poll_id: 'what-to-eat'}, 404);
    for (const v of [...viewers, outsider]) v.ws.close();
  });

  it('pushes matchmaking invites from the REST hook to subscribed games of the channel', async () => {
    const g = await game('mm1');
    const other = await game('mm2');
    await g.ok('subscribe', 'matchmaking', {operation: 'invite'});
    await other.ok('subscribe', 'matchmaking', {operation: 'invite'});
    const viewer = await srv.request('POST', 'matchmaking/invite', {token: t.as('viewer', {channel: 'mm1', user: 'v'}), body: {}});
    assert.equal(viewer.status, 403);
    const bad = await srv.request('POST', 'matchmaking/invite', {token: t.as('broadcaster', {channel: 'mm1'}), body: {bits_spent: 'lots'}});
    assert.equal(bad.status, 400);
    const r = await srv.request('POST', 'matchmaking/invite', {token: t.as('broadcaster', {channel: 'mm1'}),
      body: {data: {team: 'red'}, twitch_username: 'viewer1', twitch_id: '123', is_follower: true, subscription_tier: 1, bits_spent: 500}});
    assert.equal(r.status, 200, r.text);
    const [u] = await g.waitUpdates('matchmaking', 1);
    assert.deepEqual({...u.data, timestamp: 0}, {data: {team: 'red'}, twitch_username: 'viewer1', twitch_id: '123',
                                                  is_follower: true, subscription_tier: 1, bits_spent: 500, timestamp: 0});
    assert.ok(Number.isInteger(u.data.timestamp) && u.data.timestamp < 1e11, 'unix seconds');
    await sleep(150);
    assert.equal(other.updates('matchmaking').length, 0);
  });
});

describe('bad input and floods', () => {
  it('answers invalid JSON and unknown actions with errors, and keeps serving', async () => {
    const g = await game('c-bad');
    g.ws.send('this is not json');
    g.ws.send('[1,2,3]');
    await waitFor('two errors', () => g.frames.filter((m) => m.errors && m.meta.request_id === 65535).length === 2);
    await g.fails('teleport', 'player', {}, 400);
    await g.fails('get', 'drops-and-more', {}, 400);
    assert.deepEqual(await g.ok('get', 'drops', {status: '*'}), {drops: []});
    assert.deepEqual(await g.ok('set', 'gameMetadata', {name: 'Game', logo: '', theme: ''}), {ok: true});
    await g.fails('set', 'gameMetadata', {name: 'x'.repeat(300)}, 400);
    assert.deepEqual(await g.ok('set', 'gatewayActions', {actions: [{id: 'a1', category: 'help', state: 'available'}]}), {ok: true});
    await g.fails('set', 'gatewayActions', {actions: [{name: 'no id'}]}, 400);
    assert.deepEqual(await g.ok('subscribe', 'matchmaking', {operation: 'invite'}), {ok: true});
    await g.ok('get', 'state', {state_id: 'channel'});
  });

  it('answers the remaining actions of the catalogue', async () => {
    const ch = 'c-rest-of-catalogue';
    const g = await game(ch);
    // Unsubscribing stops poll and purchase pushes.
    await g.ok('subscribe', 'poll', {topic_id: 'u-poll'});
    await g.ok('create', 'poll', {poll_id: 'u-poll', prompt: '?', options: ['a']});
    await g.ok('unsubscribe', 'poll', {topic_id: 'u-poll'});
    await srv.request('POST', 'vote?id=u-poll', {token: t.as('viewer', {channel: ch, user: 'v'}), body: {value: 0}});
    await g.ok('subscribe', 'transaction_complete', {sku: '*'});  // legacy alias (7.6)
    await g.ok('unsubscribe', 'twitchPurchaseBits', {sku: '*'});
    const buy = await srv.request('POST', 'bits/transactions', {token: t.as('viewer', {channel: ch, user: 'v'}), body: {
      transactionId: 'u-tx', product: {sku: 's', displayName: 'S', cost: {amount: 1, type: 'bits'}},
      userId: 'v', displayName: 'V', initiator: 'current_user', transactionReceipt: 'dev'}});
    assert.equal(buy.status, 201, buy.text);
    await sleep(1500);
    assert.equal(g.updates('poll').length, 0);
    assert.equal(g.updates('twitchPurchaseBits').length, 0);
    // Niche actions: each answered.
    await g.fails('validate', 'drops', {id: 'd1'}, 404);
    for (const [action, data] of [['unsubscribe', {operation: 'invite'}], ['clear', undefined], ['remove', {id: '123'}]]) {
      assert.deepEqual(await g.ok(action, 'matchmaking', data), {ok: true});
    }
    await g.fails('remove', 'matchmaking', {}, 400);
    assert.deepEqual(await g.ok('set', 'gatewayActionState', {id: 'a1', count: 3}), {ok: true});
    await g.fails('set', 'gatewayActionState', {count: 3}, 400);
    await g.fails('keepalive', 'match', {id: 'never-made'}, 404);
    await g.fails('broadcast', 'match', {match_id: 'never-made', topic: 't', data: {}}, 404);
  });

  it('answers a flood of requests one for one, and closes a socket sending a huge frame', async () => {
    const g = await game('c-flood');
    const bystander = await game('c-flood');
    const N = 3000;
    const ids = new Set();
    const responses = [];
    g.ws.addEventListener('message', (e) => {
      const m = JSON.parse(e.data);
      if (m.meta.action === 'get') responses.push(m.meta.request_id);
    });
    for (let i = 0; i < N; i++) {
      ids.add(i + 1000);
      g.ws.send(JSON.stringify({action: 'get', params: {request_id: i + 1000, target: 'state'}, data: {state_id: 'channel'}}));
    }
    await waitFor('every response', () => responses.length === N, 20000);
    assert.deepEqual(responses, [...ids]);  // one each, in order
    // A frame over the 2 MiB limit closes that socket with 1009; the other one is unaffected.
    g.ws.send(JSON.stringify({action: 'set', params: {request_id: 1, target: 'gameMetadata'}, data: {logo: 'x'.repeat(3 * 1024 * 1024)}}));
    const e = await g.closed;
    assert.equal(e.code, 1009);
    await bystander.ok('get', 'state', {state_id: 'channel'});
  });

  it('serves GameLink (and REST) on the --gamelink-port listener too', async () => {
    const s2 = await startServer({stage: 'sandbox', extraArgs: ['--gamelink-port', '0']});
    try {
      await waitFor('the gamelink line', () => /gamelink listening on ws:\/\/127\.0\.0\.1:\d+/.test(s2.output()));
      const port = Number(s2.output().match(/gamelink listening on ws:\/\/127\.0\.0\.1:(\d+)/)[1]);
      assert.notEqual(port, s2.port);
      const g = await openGame({port});
      const f = tokenFactory(s2);
      await g.authenticate(f.as('broadcaster', {channel: 'p2'}));
      assert.deepEqual(await g.ok('set', 'state', {state_id: 'channel', state: {via: 'second port'}}),
                       {ok: true, state: {via: 'second port'}});
      const r = await s2.request('GET', 'channel_state', {token: f.as('viewer', {channel: 'p2', user: 'v'})});
      assert.deepEqual(r.json, {via: 'second port'});
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(health.status, 200);
      g.close();
    } finally {
      await s2.stop();
      s2.cleanup();
    }
  });

  it('disconnects a game that stops reading, without growing memory; others are unaffected', async () => {
    const s2 = await startServer({stage: 'sandbox', config: {messaging: {socket_queue_bytes: 65536}}});
    try {
      const f = tokenFactory(s2);
      const writer = await openGame(s2);
      await writer.authenticate(f.as('broadcaster', {channel: 'slow'}));
      const healthy = await openGame(s2);
      await healthy.authenticate(f.as('broadcaster', {channel: 'slow'}));
      await healthy.ok('subscribe', 'state', {topic_id: 'channel'});
      // A raw game socket: upgrade, authenticate, subscribe, then never read again.
      const sock = net.connect(s2.port, '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      sock.on('error', () => {});
      const frame = (obj) => {
        const text = Buffer.from(JSON.stringify(obj));
        const head = text.length < 126 ? Buffer.from([0x81, 0x80 | text.length])
                                       : Buffer.from([0x81, 0x80 | 126, text.length >> 8, text.length & 255]);
        return Buffer.concat([head, Buffer.alloc(4), text]);  // masked with the zero key
      };
      sock.write(`GET /0.2.0/${CLIENT_ID} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      sock.write(frame({action: 'authenticate', params: {request_id: 1}, data: {jwt: f.as('broadcaster', {channel: 'slow'}), client_id: CLIENT_ID}}));
      sock.write(frame({action: 'subscribe', params: {request_id: 2, target: 'state'}, data: {topic_id: 'channel'}}));
      let got = '';
      sock.on('data', (d) => { got += d.toString('latin1'); });
      await waitFor('the raw game\'s subscription', () => got.includes('"request_id":2'));
      sock.pause();
      const count = async () => {
        const r = await s2.request('GET', '/metrics');
        const line = r.text.split('\n').find((l) => l.startsWith('medkit_viewer_disconnects_total{reason="slow"} '));
        return Number(line.split(' ').pop());
      };
      const rss = () => Number(fs.readFileSync(`/proc/${s2.child.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
      const before = rss();
      const blob = 'x'.repeat(12 * 1024);
      let sets = 0;
      while (sets < 3000 && (await count()) === 0) {
        await writer.ok('set', 'state', {state_id: 'channel', state: {n: sets, blob}});
        sets++;
        await waitFor('the healthy game to keep up', () => healthy.updates('channel').length >= sets, 20000);
      }
      assert.equal(await count(), 1, `after ${sets} sets`);
      assert.ok(rss() - before < MEMORY_GROWTH_BOUND_KB, 'server memory stayed bounded');
      assert.deepEqual(healthy.updates('channel').map((m) => m.data.state.n), [...Array(sets).keys()]);
      await healthy.ok('get', 'state', {state_id: 'channel'});
      assert.deepEqual([writer.violations, healthy.violations].flat(), []);
      sock.destroy();
      writer.close();
      healthy.close();
    } finally {
      await s2.stop();
      s2.cleanup();
    }
  });

  it('closes game sockets with 1001 on shutdown', async () => {
    const s2 = await startServer({stage: 'sandbox'});
    const g = await openGame(s2);
    const exit = await s2.stop();
    assert.equal((await g.closed).code, 1001);
    assert.deepEqual(exit, {code: 0, signal: null});
    s2.cleanup();
  });
});
