// The game side of gamelink_bench.sh's poll scenario (Node 20 with --experimental-websocket):
// connects to GameLink, authenticates with a broadcaster JWT, subscribes to the poll, creates
// it (active now), and records every poll push until SIGTERM, then prints one JSON line:
// {"pushes", "min_interval_ms", "last": <the last PollResult>}.
//   node --experimental-websocket bench/gamelink_poll_game.mjs <port> <client_id> <jwt> <poll>
const [port, client, jwt, poll] = process.argv.slice(2);
const ws = new WebSocket(`ws://127.0.0.1:${port}/0.2.0/${client}`);
const pushes = [];
let id = 0;
const send = (action, target, data) =>
  ws.send(JSON.stringify({action, params: {request_id: ++id, target}, data}));
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.errors) console.error(JSON.stringify(m));
  if (m.meta.action === 'update' && m.meta.target === 'poll') pushes.push({at: Date.now(), data: m.data});
  if (m.meta.action === 'create') console.log('READY');
};
ws.onopen = () => {
  send('authenticate', undefined, {jwt, client_id: client});
  send('subscribe', 'poll', {topic_id: poll});
  send('create', 'poll', {poll_id: poll, prompt: 'Bench?', options: Array.from({length: 32}, (_, i) => `o${i}`),
                          config: {userIDVoting: false, distinctOptionsPerUser: 1, totalVotesPerUser: 1,
                                   votesPerOption: 1, disabled: false, startsAt: 0, endsAt: 0}});
};
process.on('SIGTERM', () => {
  let min = Infinity;
  for (let i = 1; i < pushes.length; i++) min = Math.min(min, pushes[i].at - pushes[i - 1].at);
  console.log(JSON.stringify({pushes: pushes.length, min_interval_ms: pushes.length > 1 ? min : null,
                              last: pushes.length ? pushes[pushes.length - 1].data : null}));
  process.exit(0);
});
