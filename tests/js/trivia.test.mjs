// Trivia (spec 5.9, 8, 9, 12 item 18) against the real binary: curated_poll_edit,
// curated_poll_edit_option, curated_poll_state, curated_poll, curated_poll_leaderboard,
// team_membership. docs/api/trivia.md describes the rules checked here.
//
// A sandbox server (every admin validated, no registered owner) and a production server
// (extension prodext: owner owner1, administrator admin7) run for the whole file. Each test
// works in its own scope (a fresh client id in the sandbox, so the extension-wide trivia data
// starts empty); production tests use fresh question ids.
import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {startServer} from './lib/server.mjs';
import {tokenFactory, randomSecret, makeScope, expectStatus, uid, REFUSED, prodConfig}
  from './lib/roles.mjs';

const SECRET = randomSecret();
const SECRET2 = randomSecret();
let sb, prod, SB, PR;

before(async () => {
  [sb, prod] = await Promise.all([
    startServer({stage: 'sandbox'}),
    startServer({stage: 'production', config: prodConfig(SECRET, SECRET2)}),
  ]);
  SB = tokenFactory(sb);
  PR = tokenFactory(prod, {secret: SECRET});
  PR.clientId = 'prodext';
});

after(async () => {
  await Promise.all([sb?.stop(), prod?.stop()]);
  sb?.cleanup();
  prod?.cleanup();
});

const ok = (r, what) => expectStatus(r, 200, undefined, what).json;
const viewer = (channel, user) => ({role: 'viewer', channel, user});
const bcOf = (channel) => ({role: 'broadcaster', channel, user: channel});
const ADMIN = 'admin';

async function addQuestion(s, q, who = ADMIN) {
  expectStatus(await s.call('POST', 'curated_poll_edit', who, q), 200, {}, `add ${q.id}`);
}
async function setState(s, qid, transition, winner, who = ADMIN) {
  const body = winner === undefined ? {transition} : {transition, winner};
  const r = await s.call('POST', `curated_poll_state?id=${qid}`, who, body);
  expectStatus(r, 200, {state: transition}, `${qid} -> ${transition}`);
}
async function vote(s, who, qid, option) {
  const r = await s.call('POST', 'curated_poll', who, {question_id: qid, vote: option});
  expectStatus(r, 200, {}, `vote ${JSON.stringify(who)} ${qid}=${option}`);
}
const opt = (id) => ({id, name: id.toUpperCase(), short_name: id, description: ''});

describe('a full contest', () => {
  test('two teams, two questions: exact leaderboard, survives a restart', async () => {
    const s = makeScope(SB);
    await addQuestion(s, {id: 'q1', name: 'One', short_name: '1', description: 'first',
                          options: [opt('x'), opt('y')]});
    await addQuestion(s, {id: 'q2', name: 'Two', short_name: '2', description: 'second'});
    for (const o of ['p', 'q']) {
      const r = await s.call('POST', 'curated_poll_edit_option', ADMIN, {id: 'q2', option: opt(o)});
      ok(r, 'add option');
    }
    await addQuestion(s, {id: 'q3', name: 'Three', short_name: '3', description: '',
                          options: [opt('m')]});
    for (const q of ['q1', 'q2', 'q3']) await setState(s, q, 'state-unlocked');

    // Team 100: a1..a4 vote, a5 only joins (5 members). Team 200: b1, b2.
    const a = (n, channel = '100') => viewer(channel, `a${n}`);
    const b = (n) => viewer('200', `b${n}`);
    await vote(s, a(1), 'q1', 'x');
    await vote(s, a(2), 'q1', 'y');
    await vote(s, a(2), 'q1', 'x');  // latest wins
    await vote(s, a(3), 'q1', 'y');
    await vote(s, a(4), 'q1', 'x');
    expectStatus(await s.call('POST', 'team_membership', a(5)), 200, {id: '100'});
    await vote(s, bcOf('100'), 'q1', 'x');
    await vote(s, a(1), 'q2', 'q');
    await vote(s, a(2, '200'), 'q2', 'p');  // watching 200 now: still team 100
    await vote(s, bcOf('100'), 'q2', 'p');
    await vote(s, a(1), 'q3', 'm');
    await vote(s, b(1), 'q1', 'x');
    await vote(s, b(2), 'q1', 'y');
    await vote(s, bcOf('200'), 'q1', 'y');
    await vote(s, b(1), 'q2', 'q');
    await vote(s, b(2), 'q2', 'q');
    await vote(s, bcOf('200'), 'q2', 'q');
    expectStatus(await s.call('GET', 'team_membership', a(2, '200')), 200, {id: '100'});

    for (const q of ['q1', 'q2', 'q3']) await setState(s, q, 'state-locked');
    await setState(s, 'q1', 'state-results', 'x');
    await setState(s, 'q2', 'state-results', 'q');

    const expected = {leaderboard: [
      {team_id: '200', combined_score: 2500, questions: {
        q1: {question_id: 'q1', broadcaster_correct: false, team_participation: 1,
             team_participants: 2, percent_correct: 0.5, team_votes: 2, score_values: [500, 0]},
        q2: {question_id: 'q2', broadcaster_correct: true, team_participation: 1,
             team_participants: 2, percent_correct: 1, team_votes: 2, score_values: [1000, 1000]}}},
      {team_id: '100', combined_score: 2000, questions: {
        q1: {question_id: 'q1', broadcaster_correct: true, team_participation: 0.8,
             team_participants: 4, percent_correct: 0.75, team_votes: 4, score_values: [750, 750]},
        q2: {question_id: 'q2', broadcaster_correct: false, team_participation: 0.4,
             team_participants: 2, percent_correct: 0.5, team_votes: 2, score_values: [500, 0]}}},
    ]};
    expectStatus(await s.call('GET', 'curated_poll_leaderboard', viewer('999', 'reader')), 200,
                 expected);
    const q1 = ok(await s.call('GET', 'curated_poll?id=q1', a(2)));
    assert.deepEqual(q1, {id: 'q1', name: 'One', short_name: '1', description: 'first',
                          options: [opt('x'), opt('y')], state: 'state-results',
                          results: {you: 'x', winner: 'x', counts: {x: 4, y: 2},
                                    percentages: {x: 4 / 6, y: 2 / 6}}});
    // The broadcaster's own vote is its "you", but not in the viewer counts.
    const q2 = ok(await s.call('GET', 'curated_poll?id=q2', bcOf('100')));
    assert.deepEqual(q2.results, {you: 'p', winner: 'q', counts: {p: 1, q: 3},
                                  percentages: {p: 0.25, q: 0.75}});

    // Durable: a restart on the same data directory serves the same leaderboard.
    await sb.stop();
    const dataDir = sb.dataDir;
    sb = await startServer({stage: 'sandbox', dataDir});
    SB.srv = sb;
    s.f.srv = sb;
    expectStatus(await s.call('GET', 'curated_poll_leaderboard', viewer('999', 'reader')), 200,
                 expected);
    expectStatus(await s.call('GET', 'team_membership', a(5, '300')), 200, {id: '100'});
  });
});

describe('roles', () => {
  const edits = (qid) => [
    ['POST', 'curated_poll_edit', {id: `${qid}n`, name: 'n'}],
    ['DELETE', 'curated_poll_edit', {id: qid}],
    ['POST', 'curated_poll_edit_option', {id: qid, option: opt('z')}],
    ['DELETE', 'curated_poll_edit_option', {question: qid, option: 'a'}],
    ['POST', `curated_poll_state?id=${qid}`, {transition: 'state-unlocked'}],
  ];

  test('sandbox: admin, backend, external edit; viewers and broadcasters get 403', async () => {
    const s = makeScope(SB);
    await addQuestion(s, {id: 'q', name: 'n', options: [opt('a')]});
    const before = ok(await s.call('GET', 'curated_poll', ADMIN));
    for (const who of ['viewer', 'moderator', 'anonymous', 'broadcaster']) {
      for (const [method, path, body] of edits('q')) {
        expectStatus(await s.call(method, path, who, body), 403, REFUSED, `${who} ${method} ${path}`);
      }
    }
    assert.deepEqual(ok(await s.call('GET', 'curated_poll', ADMIN)), before);
    await addQuestion(s, {id: 'b1'}, 'backend');
    await addQuestion(s, {id: 'e1'}, 'external');
    await addQuestion(s, {id: 'a1'}, 'admin');
    assert.deepEqual(ok(await s.call('GET', 'curated_poll', 'backend')).questions.map((q) => q.id),
                     ['q', 'b1', 'e1', 'a1']);
    // Admin and backend do not vote or join a team.
    await setState(s, 'q', 'state-unlocked');
    expectStatus(await s.call('POST', 'curated_poll', 'admin', {question_id: 'q', vote: 'a'}),
                 403, REFUSED);
    expectStatus(await s.call('POST', 'team_membership', 'backend'), 403, REFUSED);
    // Viewers and broadcasters read and vote.
    await vote(s, 'viewer', 'q', 'a');
    await vote(s, 'broadcaster', 'q', 'a');
    await vote(s, 'anonymous', 'q', 'a');
    assert.deepEqual(ok(await s.call('GET', 'curated_poll?id=q', 'anonymous')).results,
                     {you: 'a', counts: {a: 2}, percentages: {a: 1}});
  });

  test('production: owner broadcaster, owner and listed admins, backend edit', async () => {
    const s = makeScope(PR);
    const qid = uid('pq');
    await addQuestion(s, {id: qid, name: 'n', options: [opt('a')]}, 'listedAdmin');
    const before = ok(await s.call('GET', `curated_poll?id=${qid}`, 'ownerAdmin'));
    for (const who of ['viewer', 'broadcaster', 'admin']) {
      for (const [method, path, body] of edits(qid)) {
        expectStatus(await s.call(method, path, who, body), 403, REFUSED, `${who} ${method} ${path}`);
      }
    }
    assert.deepEqual(ok(await s.call('GET', `curated_poll?id=${qid}`, 'ownerAdmin')), before);
    // Non-validated admins read like viewers: the inactive question is hidden.
    expectStatus(await s.call('GET', `curated_poll?id=${qid}`, 'admin'), 404, {reason: 'Not Found'});
    ok(await s.call('POST', 'curated_poll_edit_option', 'ownerBroadcaster',
                    {id: qid, option: opt('b')}));
    await setState(s, qid, 'state-unlocked', undefined, 'backend');
    await setState(s, qid, 'state-locked', undefined, 'ownerAdmin');
    expectStatus(await s.call('DELETE', 'curated_poll_edit', 'ownerBroadcaster', {id: qid}), 200, {});
    expectStatus(await s.call('GET', `curated_poll?id=${qid}`, 'ownerAdmin'), 404,
                 {reason: 'Not Found'});
  });
});

describe('editing, states and refusals', () => {
  test('options: add, replace, remove (DELETE with a body) answer with the question', async () => {
    const s = makeScope(SB);
    await addQuestion(s, {id: 'q', name: 'Q', short_name: 'q', description: 'd', image: 'http://i/1',
                          order: 2});
    let q = ok(await s.call('POST', 'curated_poll_edit_option', ADMIN, {id: 'q', option: opt('a')}));
    assert.deepEqual(q, {id: 'q', name: 'Q', short_name: 'q', description: 'd', image: 'http://i/1',
                         order: 2, options: [opt('a')], state: 'state-inactive'});
    ok(await s.call('POST', 'curated_poll_edit_option', ADMIN, {id: 'q', option: opt('b')}));
    q = ok(await s.call('POST', 'curated_poll_edit_option', ADMIN,
                        {id: 'q', option: {...opt('a'), name: 'Renamed', order: 1}}));
    assert.deepEqual(q.options, [{...opt('a'), name: 'Renamed', order: 1}, opt('b')]);
    q = ok(await s.call('DELETE', 'curated_poll_edit_option', ADMIN, {question: 'q', option: 'a'}));
    assert.deepEqual(q.options, [opt('b')]);
    expectStatus(await s.call('DELETE', 'curated_poll_edit_option', ADMIN, {question: 'q', option: 'a'}),
                 404, {reason: 'Not Found'});
    // add with an existing id replaces the fields.
    await addQuestion(s, {id: 'q', name: 'Q2', short_name: 'q2', description: 'e'});
    assert.deepEqual(ok(await s.call('GET', 'curated_poll?id=q', ADMIN)),
                     {id: 'q', name: 'Q2', short_name: 'q2', description: 'e', options: [opt('b')],
                      state: 'state-inactive'});
    expectStatus(await s.call('DELETE', 'curated_poll_edit', ADMIN, {id: 'q'}), 200, {});
    expectStatus(await s.call('DELETE', 'curated_poll_edit', ADMIN, {id: 'q'}), 404,
                 {reason: 'Not Found'});
    expectStatus(await s.call('GET', 'curated_poll', ADMIN), 200, {questions: []});
  });

  test('state machine, closed polls, visibility; refusals change nothing', async () => {
    const s = makeScope(SB);
    await addQuestion(s, {id: 'q', name: 'Q', options: [opt('a'), opt('b')]});
    const v = viewer('100', 'v1');
    expectStatus(await s.call('GET', 'curated_poll', v), 200, {questions: []});
    expectStatus(await s.call('GET', 'curated_poll?id=q', v), 404, {reason: 'Not Found'});
    const bad = async (body, status, reason) => {
      const r = await s.call('POST', 'curated_poll_state?id=q', ADMIN, body);
      expectStatus(r, status, undefined, JSON.stringify(body));
      assert.equal(r.json.reason, reason);
    };
    await bad({transition: 'state-locked'}, 400, 'invalid transition');
    await bad({transition: 'state-results', winner: 'a'}, 400, 'invalid transition');
    await bad({transition: 'open'}, 400, 'invalid transition');
    await setState(s, 'q', 'state-unlocked');
    await setState(s, 'q', 'state-unlocked');  // same state: no-op
    await bad({transition: 'state-results', winner: 'a'}, 400, 'invalid transition');
    await vote(s, v, 'q', 'a');
    const unacceptable = await s.call('POST', 'curated_poll', v, {question_id: 'q', vote: 'zz'});
    expectStatus(unacceptable, 400, {reason: 'unacceptable vote'});
    await setState(s, 'q', 'state-locked');
    expectStatus(await s.call('POST', 'curated_poll', v, {question_id: 'q', vote: 'b'}), 400,
                 {reason: 'poll is closed'});
    await bad({transition: 'state-results'}, 400, 'winner required');
    await bad({transition: 'state-results', winner: 'zz'}, 400, 'winner is not an option of the question');
    expectStatus(await s.call('DELETE', 'curated_poll_edit_option', ADMIN, {question: 'q', option: 'b'}),
                 400, {reason: 'options can only be removed while the question is state-inactive'});
    const seen = ok(await s.call('GET', 'curated_poll?id=q', v));
    assert.deepEqual(seen, {id: 'q', name: 'Q', short_name: '', description: '',
                            options: [opt('a'), opt('b')], state: 'state-locked',
                            results: {you: 'a', counts: {a: 1, b: 0}, percentages: {a: 1, b: 0}}});
    await setState(s, 'q', 'state-results', 'b');
    await setState(s, 'q', 'state-results', 'a');  // re-declared
    assert.deepEqual(ok(await s.call('GET', 'curated_poll?id=q', v)).results.winner, 'a');
    await bad({transition: 'state-unlocked'}, 400, 'invalid transition');
    // Reset: back to inactive, votes discarded, hidden again.
    await setState(s, 'q', 'state-inactive');
    expectStatus(await s.call('GET', 'curated_poll', v), 200, {questions: []});
    await setState(s, 'q', 'state-unlocked');
    assert.deepEqual(ok(await s.call('GET', 'curated_poll?id=q', v)).results,
                     {counts: {a: 0, b: 0}, percentages: {a: 0, b: 0}});
    // Malformed bodies.
    expectStatus(await s.call('POST', 'curated_poll', v, undefined, {rawBody: ''}), 400,
                 {reason: 'Invalid body'});
    expectStatus(await s.call('POST', 'curated_poll', v, undefined, {rawBody: '{x'}), 400,
                 {reason: 'Malformed json body'});
    expectStatus(await s.call('POST', 'curated_poll_edit', ADMIN, {name: 'no id'}), 400,
                 {reason: 'question id required'});
    expectStatus(await s.call('POST', 'curated_poll_edit', ADMIN, {id: 'x'.repeat(65)}), 400,
                 {reason: 'question id is too long', info: 'limit 64 bytes'});
  });

  test('limits: 64 questions, 32 options', async () => {
    const s = makeScope(SB);
    await Promise.all(Array.from({length: 64}, (_, i) => addQuestion(s, {id: `q${i}`})));
    const r = await s.call('POST', 'curated_poll_edit', ADMIN, {id: 'q64'});
    expectStatus(r, 400, {reason: 'Too many questions', info: 'limit 64 per extension'});
    assert.equal(ok(await s.call('GET', 'curated_poll', ADMIN)).questions.length, 64);
    const options = Array.from({length: 33}, (_, i) => opt(`o${i}`));
    expectStatus(await s.call('POST', 'curated_poll_edit', ADMIN, {id: 'q0', options}), 400,
                 {reason: 'Too many options', info: 'limit 32'});
    await addQuestion(s, {id: 'q0', options: options.slice(0, 32)});
    expectStatus(await s.call('POST', 'curated_poll_edit_option', ADMIN, {id: 'q0', option: opt('o32')}),
                 400, {reason: 'Too many options', info: 'limit 32'});
    assert.equal(ok(await s.call('GET', 'curated_poll?id=q0', ADMIN)).options.length, 32);
  });
});

describe('teams and concurrency', () => {
  test('team_membership: POST without body or Content-Type; fixed at the first vote or join', async () => {
    const s = makeScope(SB);
    const token = s.tok(viewer('100', 'v1'));
    const raw = (method) => sb.request(method, 'team_membership', {token, clientId: s.clientId});
    expectStatus(await raw('GET'), 200, {id: ''});
    expectStatus(await raw('POST'), 200, {id: '100'});
    expectStatus(await s.call('POST', 'team_membership', viewer('200', 'v1')), 200, {id: '100'});
    expectStatus(await s.call('GET', 'team_membership', viewer('200', 'v1')), 200, {id: '100'});
    expectStatus(await s.call('GET', 'team_membership', bcOf('300')), 200, {id: '300'});
    expectStatus(await s.call('POST', 'team_membership', bcOf('300')), 200, {id: '300'});
  });

  test('200 viewers voting and re-voting at once: exact counts', async () => {
    const s = makeScope(SB);
    await addQuestion(s, {id: 'q', options: [opt('a'), opt('b'), opt('c')]});
    await setState(s, 'q', 'state-unlocked');
    const viewers = Array.from({length: 200}, (_, i) => viewer(i % 2 ? '100' : '200', `u${i}`));
    const choice = (i, round) => ['a', 'b', 'c'][(i + round) % 3];
    for (const round of [0, 1]) {
      const rs = await Promise.all(viewers.map((w, i) =>
        s.call('POST', 'curated_poll', w, {question_id: 'q', vote: choice(i, round)})));
      for (const r of rs) expectStatus(r, 200, {});
    }
    const expected = {a: 0, b: 0, c: 0};
    viewers.forEach((_, i) => { expected[choice(i, 1)] += 1; });
    const results = ok(await s.call('GET', 'curated_poll?id=q', ADMIN)).results;
    assert.deepEqual(results.counts, expected);
    assert.equal(results.counts.a + results.counts.b + results.counts.c, 200);
    await setState(s, 'q', 'state-locked');
    await setState(s, 'q', 'state-results', 'a');
    const board = ok(await s.call('GET', 'curated_poll_leaderboard', 'viewer')).leaderboard;
    const votes = Object.fromEntries(board.map((t) => [t.team_id, t.questions.q.team_votes]));
    assert.deepEqual(votes, {100: 100, 200: 100});
    for (const t of board) assert.equal(t.questions.q.team_participation, 1);
  });
});
