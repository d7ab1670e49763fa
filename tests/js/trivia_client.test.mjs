// Real-client trivia run: the official @muxy/extensions-js 2.4.18 bundle in jsdom windows (one
// per simulated user) drives a whole contest against a sandbox server, from question editing to
// the leaderboard (spec 5.9, 12 item 18; docs/api/trivia.md).
//
// Users (client id testclientid):
//   admin           admin, channel 100 (user 900): edits questions, options, states
//   bc100, bc300    broadcasters of channels 100 and 300
//   v1, v2          viewers of channel 100 (users 201, 202)
//   v3, v4          viewers of channel 300 (users 301, 302)
//   reader          viewer of channel 500 (user 501): reads the leaderboard from another window
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

// Values from a jsdom window belong to another realm; compare plain JSON copies.
const plain = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));
async function eq(actualOrPromise, expected, msg) {
  assert.deepEqual(plain(await actualOrPromise), plain(expected), msg);
}
async function refused(promise, reason, what) {
  const err = await rejection(promise);
  assert.equal(typeof err, 'object', `${what}: rejection should be the parsed body, got ${String(err)}`);
  assert.equal(err.reason, reason, `${what}: ${JSON.stringify(err)}`);
}

const opt = (id, name) => ({id, name, short_name: id, description: `option ${id}`});

before(async () => {
  try {
    srv = await startServer({stage: 'sandbox', store: 'rocksdb'});
    const users = {
      admin: {role: 'admin', channelID: '100', userID: '900'},
      bc100: {role: 'broadcaster', channelID: '100', userID: '100'},
      bc300: {role: 'broadcaster', channelID: '300', userID: '300'},
      v1: {role: 'viewer', channelID: '100', userID: '201'},
      v2: {role: 'viewer', channelID: '100', userID: '202'},
      v3: {role: 'viewer', channelID: '300', userID: '301'},
      v4: {role: 'viewer', channelID: '300', userID: '302'},
      reader: {role: 'viewer', channelID: '500', userID: '501'},
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
  await srv?.stop();
  srv?.cleanup();
  // The SDK's timers are cleared by closing the windows; exit anyway if something lingers.
  setTimeout(() => process.exit(anyFailed ? 1 : 0), 200).unref();
});

describe('a trivia contest through the real MEDKit client', () => {
  check('the admin writes questions and options', async () => {
    const {sdk} = U.admin;
    await eq(sdk.addExtensionTriviaQuestion({id: 'q1', name: 'Capital of France?', short_name: 'Capital',
                                             description: 'geography'}), {});
    let q = await sdk.addExtensionTriviaOptionToQuestion('q1', opt('paris', 'Paris'));
    await eq(q, {id: 'q1', name: 'Capital of France?', short_name: 'Capital', description: 'geography',
                 options: [opt('paris', 'Paris')], state: 'state-inactive'});
    q = await sdk.addExtensionTriviaOptionToQuestion('q1', opt('lyon', 'Lyon'));
    assert.deepEqual(plain(q).options.map((o) => o.id), ['paris', 'lyon']);
    await eq(sdk.addExtensionTriviaQuestion({id: 'q2', name: '2+2?', short_name: 'Sum', description: '',
                                             options: [opt('three', '3'), opt('four', '4')]}), {});
    // A third question with a wrong option, fixed and then removed.
    await sdk.addExtensionTriviaQuestion({id: 'q3', name: 'tmp', short_name: 'tmp', description: ''});
    await sdk.addExtensionTriviaOptionToQuestion('q3', opt('oops', 'Oops'));
    q = await sdk.removeExtensionTriviaOptionFromQuestion('q3', 'oops');
    await eq(q, {id: 'q3', name: 'tmp', short_name: 'tmp', description: '', options: [],
                 state: 'state-inactive'});
    await eq(sdk.removeExtensionTriviaQuestion('q3'), {});
    const all = await sdk.getExtensionTriviaQuestions();
    assert.deepEqual(plain(all).questions.map((x) => [x.id, x.state]),
                     [['q1', 'state-inactive'], ['q2', 'state-inactive']]);
  });

  check('viewers cannot edit and do not see inactive questions', async () => {
    await refused(U.v1.sdk.addExtensionTriviaQuestion({id: 'evil', name: 'x', short_name: 'x', description: ''}),
                  'The JWT role is not allowed to perform this operation.', 'viewer add');
    await refused(U.bc100.sdk.setExtensionTriviaQuestionState('q1', 'state-unlocked'),
                  'The JWT role is not allowed to perform this operation.', 'broadcaster state');
    await eq(U.v1.sdk.getExtensionTriviaQuestions(), {questions: []});
    await refused(U.v1.sdk.getExtensionTriviaQuestion('q1'), 'Not Found', 'hidden question');
    await eq(U.v1.sdk.getExtensionTriviaJoinedTeam(), {id: ''});
  });

  check('questions open; viewers join teams and vote', async () => {
    const {sdk} = U.admin;
    await eq(sdk.setExtensionTriviaQuestionState('q1', 'state-unlocked'), {state: 'state-unlocked'});
    await eq(sdk.setExtensionTriviaQuestionState('q2', 'state-unlocked'), {state: 'state-unlocked'});
    const seen = await U.v1.sdk.getExtensionTriviaQuestions();
    assert.deepEqual(plain(seen).questions.map((x) => x.state), ['state-unlocked', 'state-unlocked']);

    // v1, v3 join first; v2, v4 get their team from their first vote.
    await eq(U.v1.sdk.joinExtensionTriviaTeam(), {id: '100'});
    await eq(U.v3.sdk.joinExtensionTriviaTeam(), {id: '300'});
    await eq(U.v1.sdk.getExtensionTriviaJoinedTeam(), {id: '100'});
    await eq(U.bc300.sdk.getExtensionTriviaJoinedTeam(), {id: '300'});

    // q1 (winner paris): team 100 both right; team 300 one of two; bc100 right, bc300 wrong.
    await eq(U.v1.sdk.setExtensionTriviaQuestionVote('q1', 'lyon'), {});
    await eq(U.v1.sdk.setExtensionTriviaQuestionVote('q1', 'paris'), {});  // latest wins
    await eq(U.v2.sdk.setExtensionTriviaQuestionVote('q1', 'paris'), {});
    await eq(U.v3.sdk.setExtensionTriviaQuestionVote('q1', 'paris'), {});
    await eq(U.v4.sdk.setExtensionTriviaQuestionVote('q1', 'lyon'), {});
    await eq(U.bc100.sdk.setExtensionTriviaQuestionVote('q1', 'paris'), {});
    await eq(U.bc300.sdk.setExtensionTriviaQuestionVote('q1', 'lyon'), {});
    // q2 (winner four): team 100 one of two; team 300 both right; both broadcasters right.
    await U.v1.sdk.setExtensionTriviaQuestionVote('q2', 'four');
    await U.v2.sdk.setExtensionTriviaQuestionVote('q2', 'three');
    await U.v3.sdk.setExtensionTriviaQuestionVote('q2', 'four');
    await U.v4.sdk.setExtensionTriviaQuestionVote('q2', 'four');
    await U.bc100.sdk.setExtensionTriviaQuestionVote('q2', 'four');
    await U.bc300.sdk.setExtensionTriviaQuestionVote('q2', 'four');
    await refused(U.v2.sdk.setExtensionTriviaQuestionVote('q2', 'five'), 'unacceptable vote', 'bad option');
    await eq(U.v2.sdk.getExtensionTriviaJoinedTeam(), {id: '100'});
    await eq(U.v4.sdk.getExtensionTriviaJoinedTeam(), {id: '300'});

    const q1 = plain(await U.v4.sdk.getExtensionTriviaQuestion('q1'));
    assert.deepEqual(q1.results, {you: 'lyon', counts: {paris: 3, lyon: 1},
                                  percentages: {paris: 0.75, lyon: 0.25}});
  });

  check('the admin closes the questions and declares the winners', async () => {
    const {sdk} = U.admin;
    await eq(sdk.setExtensionTriviaQuestionState('q1', 'state-locked'), {state: 'state-locked'});
    await eq(sdk.setExtensionTriviaQuestionState('q2', 'state-locked'), {state: 'state-locked'});
    await refused(U.v2.sdk.setExtensionTriviaQuestionVote('q1', 'lyon'), 'poll is closed', 'locked');
    await refused(sdk.setExtensionTriviaQuestionState('q1', 'state-results'), 'winner required', 'no winner');
    await eq(sdk.setExtensionTriviaQuestionState('q1', 'state-results', 'paris'), {state: 'state-results'});
    await eq(sdk.setExtensionTriviaQuestionState('q2', 'state-results', 'four'), {state: 'state-results'});
    const q2 = plain(await U.v2.sdk.getExtensionTriviaQuestion('q2'));
    assert.equal(q2.state, 'state-results');
    assert.deepEqual(q2.results, {you: 'three', winner: 'four', counts: {three: 1, four: 3},
                                  percentages: {three: 0.25, four: 0.75}});
  });

  check('the leaderboard, read from another window, has the exact scores', async () => {
    // team 100: q1 1.0 × 1000 × 2 = 2000, q2 0.5 × 1000 × 2 = 1000 → 3000
    // team 300: q1 0.5 × 1000 × 1 = 500,  q2 1.0 × 1000 × 2 = 2000 → 2500
    await eq(U.reader.sdk.getExtensionTriviaLeaderboard(), {leaderboard: [
      {team_id: '100', combined_score: 3000, questions: {
        q1: {question_id: 'q1', broadcaster_correct: true, team_participation: 1, team_participants: 2,
             percent_correct: 1, team_votes: 2, score_values: [1000, 1000]},
        q2: {question_id: 'q2', broadcaster_correct: true, team_participation: 1, team_participants: 2,
             percent_correct: 0.5, team_votes: 2, score_values: [500, 500]}}},
      {team_id: '300', combined_score: 2500, questions: {
        q1: {question_id: 'q1', broadcaster_correct: false, team_participation: 1, team_participants: 2,
             percent_correct: 0.5, team_votes: 2, score_values: [500, 0]},
        q2: {question_id: 'q2', broadcaster_correct: true, team_participation: 1, team_participants: 2,
             percent_correct: 1, team_votes: 2, score_values: [1000, 1000]}}},
    ]});
  });
});
