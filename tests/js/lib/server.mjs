// Test harness: starts the real `medkit` binary on a free port with a temporary data
// directory, and offers small HTTP helpers. Used by every *.test.mjs suite.
//
//   const srv = await startServer({stage: 'sandbox'});          // or {config: {...}}
//   const tok = await srv.sandboxToken({role: 'viewer', channel_id: '1', user_id: '2'});
//   const r = await srv.request('GET', 'channel_state', {token: tok});   // {status, json, text, headers}
//   await srv.stop();
import {spawn, execFileSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const BIN = process.env.MEDKIT_BIN ||
  path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../build/release/medkit');

export const CLIENT_ID = 'testclientid';

// Starts a server. options: stage, store ('rocksdb'|'memory'), config (object written to a
// JSON file), dataDir (reuse a directory, e.g. after a crash), threads, extraArgs.
export async function startServer(options = {}) {
  const dataDir = options.dataDir || fs.mkdtempSync(path.join(os.tmpdir(), 'medkit-test-'));
  const args = ['serve', '--port', '0', '--listen', '127.0.0.1', '--data-dir', dataDir,
                '--stage', options.stage || 'sandbox', '--store', options.store || 'rocksdb',
                '--threads', String(options.threads || 2), '--log-level', 'warn'];
  let configFile = null;
  if (options.config) {
    configFile = path.join(dataDir, 'test-config.json');
    fs.writeFileSync(configFile, JSON.stringify(options.config));
    args.push('--config', configFile);
  }
  args.push(...(options.extraArgs || []));
  const child = spawn(BIN, args, {stdio: ['ignore', 'pipe', 'pipe']});
  let output = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + output)), 15000);
    const onData = (chunk) => {
      output += chunk.toString();
      const m = output.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (c) => { output += c.toString(); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}:\n${output}`)); });
  });
  child.removeAllListeners('exit');
  const base = `http://127.0.0.1:${port}`;
  let exited = null;
  const exitPromise = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = {code, signal}; resolve(exited);
  }));

  const srv = {
    child, port, base, dataDir, configFile,
    output: () => output,
    // Raw request. endpoint: 'channel_state' (under /v1/e/) or an absolute path '/healthz'.
    async request(method, endpoint, {token, clientId = CLIENT_ID, body, rawBody, headers = {}} = {}) {
      const url = endpoint.startsWith('/') ? base + endpoint : `${base}/v1/e/${endpoint}`;
      const h = {...headers};
      if (token) h['Authorization'] = `${clientId} ${token}`;
      let payload;
      if (rawBody !== undefined) payload = rawBody;
      else if (body !== undefined) {
        payload = JSON.stringify(body);
        if (!h['Content-Type']) h['Content-Type'] = 'application/x-www-form-urlencoded; charset=UTF-8';
      }
      const res = await fetch(url, {method, headers: h, body: payload});
      const text = await res.text();
      let json;
      try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
      return {status: res.status, json, text, headers: res.headers};
    },
    // POST authtoken (sandbox); returns the token string.
    async sandboxToken({role = 'viewer', channel_id = '12345', user_id, clientId = CLIENT_ID} = {}) {
      const body = {app_id: clientId, channel_id, role};
      if (user_id !== undefined) body.user_id = user_id;
      const r = await srv.request('POST', `authtoken?role=${role}`, {body, headers: {'Content-Type': 'application/json'}});
      if (r.status !== 200) throw new Error(`authtoken ${r.status} ${r.text}`);
      return r.json.token;
    },
    // Graceful stop (SIGTERM); resolves with {code, signal}.
    async stop() {
      if (!exited) child.kill('SIGTERM');
      return exitPromise;
    },
    // Crash (SIGKILL).
    async kill9() {
      if (!exited) child.kill('SIGKILL');
      return exitPromise;
    },
    cleanup() { fs.rmSync(dataDir, {recursive: true, force: true}); },
  };
  return srv;
}

// Mints a token with `medkit token` (signed with a base64 secret, or a sandbox server's key).
export function mintToken({clientId = CLIENT_ID, role = 'viewer', channel = '', user = '', opaque = '',
                           secret, dataDir, ttl = 3600, stage} = {}) {
  const args = ['token', '--client-id', clientId, '--role', role, '--ttl', String(ttl)];
  if (channel) args.push('--channel', channel);
  if (user) args.push('--user', user);
  if (opaque) args.push('--opaque-user', opaque);
  if (secret) args.push('--secret', secret);
  if (dataDir) args.push('--data-dir', dataDir);
  if (stage) args.push('--stage', stage);
  return execFileSync(BIN, args).toString().trim();
}

// Signs arbitrary header/claims with HS256 (for malformed-token tests), key = raw Buffer.
import crypto from 'node:crypto';
export function signJwt(header, claims, keyBytes) {
  const enc = (o) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');
  const h = enc(header), p = enc(claims);
  const sig = crypto.createHmac('sha256', keyBytes).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${sig}`;
}
