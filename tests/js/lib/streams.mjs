// Socket helpers shared by the events and GameLink suites: waitFor() and a native viewer
// stream client (WebSocket at /v1/e/events).
import assert from 'node:assert/strict';
import {WebSocket} from 'undici';
import {CLIENT_ID} from './server.mjs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// How much the server's resident memory may grow in the slow-reader tests: 64 MiB, or 512 MiB
// under the sanitizers, whose quarantine keeps freed memory (tests/CMakeLists.txt sets
// MEDKIT_SANITIZED for the asan-ubsan preset).
export const MEMORY_GROWTH_BOUND_KB = process.env.MEDKIT_SANITIZED === '1' ? 512 * 1024 : 64 * 1024;

// Polls predicate (which may be async) every 25 ms; throws after timeoutMs.
export async function waitFor(what, predicate, timeoutMs = 10000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await predicate()) return;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}

// A native WebSocket client collecting parsed messages; resolves once "ready" arrived (and
// drops it). {ws, messages, closed, events()}.
export async function nativeSocket(srv, token, clientId = CLIENT_ID) {
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/v1/e/events?client_id=${clientId}&token=${token}`);
  const messages = [];
  const closed = new Promise((resolve) => { ws.onclose = (e) => resolve(e); });
  ws.onmessage = (e) => messages.push(JSON.parse(e.data));
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  await waitFor('ready', () => messages.length > 0);
  assert.equal(messages[0].event, 'ready');
  messages.shift();
  return {ws, messages, closed, events: () => messages.map((m) => m.event)};
}
