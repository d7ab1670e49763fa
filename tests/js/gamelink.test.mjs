// GameLink (spec 7) against the real binary, with the project's own client
// (lib/gamelink_client.mjs), which checks every server frame against the shapes of section 7.
// Covers: paths, authentication (legacy JWT here; PINs and refresh tokens in link suites),
// requests before authentication, state and config get/set/patch/subscribe with the
// cross-surface effects of 7.7 (REST write -> game push, game write -> REST readers and
// viewers), broadcast, polls with the push cadence of 7.5, datastream order, bad input,
// floods, and shutdown.
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {WebSocket} from 'undici';
import {startServer, CLIENT_ID} from './lib/server.mjs';
import {tokenFactory} from './lib/roles.mjs';
import {sleep, waitFor, nativeSocket} from './lib/streams.mjs';
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
    assert.ok(votes.length <= 2, `${votes.length} pushes for a burst of 3 votes`);
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

describe('bad input and floods', () => {
  it('answers invalid JSON and unknown actions with errors, and keeps serving', async () => {
    const g = await game('c-bad');
    g.ws.send('this is not json');
    g.ws.send('[1,2,3]');
    await waitFor('two errors', () => g.frames.filter((m) => m.errors && m.meta.request_id === 65535).length === 2);
    await g.fails('teleport', 'player', {}, 400);
    await g.fails('get', 'drops-and-more', {}, 400);
    assert.deepEqual(await g.ok('get', 'drops', {status: '*'}), {drops: []});
    await g.fails('create', 'match', {id: 'm'}, 501);
    assert.deepEqual(await g.ok('set', 'gameMetadata', {name: 'Game', logo: '', theme: ''}), {ok: true});
    await g.fails('set', 'gameMetadata', {name: 'x'.repeat(300)}, 400);
    assert.deepEqual(await g.ok('set', 'gatewayActions', {actions: [{id: 'a1', category: 'help', state: 'available'}]}), {ok: true});
    await g.fails('set', 'gatewayActions', {actions: [{name: 'no id'}]}, 400);
    assert.deepEqual(await g.ok('subscribe', 'matchmaking', {operation: 'invite'}), {ok: true});
    await g.ok('get', 'state', {state_id: 'channel'});
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

  it('closes game sockets with 1001 on shutdown', async () => {
    const s2 = await startServer({stage: 'sandbox'});
    const g = await openGame(s2);
    const exit = await s2.stop();
    assert.equal((await g.closed).code, 1001);
    assert.deepEqual(exit, {code: 0, signal: null});
    s2.cleanup();
  });
});
