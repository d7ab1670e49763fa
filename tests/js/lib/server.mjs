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

// ---------------------------------------------------------------------------------------------
// Helpers added for the http/limits/stages/crash suites (additive; the exports above are
// unchanged).

// Decodes a JWT's header and payload (no verification).
export function decodeJwt(token) {
  const [h, p] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString()),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString()),
  };
}

// The sandbox server's signing key (raw bytes) from `${dataDir}/signing.key`.
export function readSigningKey(dataDir) {
  return Buffer.from(fs.readFileSync(path.join(dataDir, 'signing.key'), 'utf8').trim(), 'base64');
}

// Signs header/claims with HMAC using the given Node digest name ('sha256', 'sha512', ...),
// whatever the header says (for algorithm-confusion tests).
export function signJwtWith(digest, header, claims, keyBytes) {
  const enc = (o) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');
  const h = enc(header), p = enc(claims);
  const sig = crypto.createHmac(digest, keyBytes).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${sig}`;
}

// A raw HTTP/1.1 connection (node:net) for keep-alive, pipelining, Expect and malformed-input
// tests. Responses are parsed with Content-Length (and chunked) framing.
//   const c = await RawConnection.open(srv.port);
//   c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
//   const r = await c.readResponse();   // {status, statusText, headers (lower-case), body, json}
//   c.close();
import net from 'node:net';
export class RawConnection {
  static open(port, host = '127.0.0.1') {
    return new Promise((resolve, reject) => {
      const socket = net.connect({port, host}, () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.ended = false;   // peer finished sending (FIN) or the socket closed
    this.closed = false;  // socket fully closed
    this.error = null;
    this.waiters = [];
    socket.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this._wake(); });
    socket.on('end', () => { this.ended = true; this._wake(); });
    socket.on('close', () => { this.ended = true; this.closed = true; this._wake(); });
    socket.on('error', (e) => { this.error = e; this._wake(); });
  }

  _wake() { const w = this.waiters; this.waiters = []; for (const f of w) f(); }

  _more(deadline) {
    return new Promise((resolve, reject) => {
      const left = deadline - Date.now();
      if (left <= 0) return reject(new Error('timeout waiting for data; have: ' + JSON.stringify(this.buf.toString('latin1').slice(0, 300))));
      const t = setTimeout(() => reject(new Error('timeout waiting for data; have: ' + JSON.stringify(this.buf.toString('latin1').slice(0, 300)))), left);
      this.waiters.push(() => { clearTimeout(t); resolve(); });
    });
  }

  // Resolves when the socket has been written (errors such as EPIPE are swallowed; see .error).
  write(data) {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve(false);
      this.socket.write(data, (err) => resolve(!err));
    });
  }

  // Reads the next response (including 1xx interim ones). head: the request was HEAD.
  async readResponse({head = false, timeout = 10000} = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const parsed = this._tryParse(head);
      if (parsed) return parsed;
      if (this.ended) {
        throw new Error('connection closed before a full response; have: ' +
                        JSON.stringify(this.buf.toString('latin1').slice(0, 300)));
      }
      await this._more(deadline);
    }
  }

  _tryParse(head) {
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return null;
    const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
    const m = lines[0].match(/^HTTP\/(\d\.\d) (\d{3}) ?(.*)$/);
    if (!m) throw new Error('bad status line: ' + JSON.stringify(lines[0]));
    const status = Number(m[2]);
    const headers = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      const k = line.slice(0, i).trim().toLowerCase(), v = line.slice(i + 1).trim();
      headers[k] = headers[k] === undefined ? v : headers[k] + ', ' + v;
    }
    let pos = end + 4;
    let body;
    if (head || status === 204 || status === 304 || (status >= 100 && status < 200)) {
      body = Buffer.alloc(0);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (this.buf.length < pos + n) return null;
      body = this.buf.subarray(pos, pos + n);
      pos += n;
    } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
      const parts = [];
      for (;;) {
        const le = this.buf.indexOf('\r\n', pos);
        if (le < 0) return null;
        const size = parseInt(this.buf.subarray(pos, le).toString('latin1'), 16);
        if (this.buf.length < le + 2 + size + 2) return null;
        parts.push(this.buf.subarray(le + 2, le + 2 + size));
        pos = le + 2 + size + 2;
        if (size === 0) break;
      }
      body = Buffer.concat(parts);
    } else {
      if (!this.ended) return null;  // read until close
      body = this.buf.subarray(pos);
      pos = this.buf.length;
    }
    this.buf = this.buf.subarray(pos);
    const text = body.toString('utf8');
    let json;
    try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
    return {status, statusText: m[3], httpVersion: m[1], headers, body, text, json};
  }

  // Resolves true once the peer closed the connection (FIN or reset), false on timeout.
  async waitClosed(timeout = 5000) {
    const deadline = Date.now() + timeout;
    while (!this.ended) {
      try { await this._more(deadline); } catch { return false; }
    }
    return true;
  }

  close() { this.socket.destroy(); }
}

// Builds one raw HTTP/1.1 request. headers: object; body: string/Buffer (Content-Length added).
export function rawRequestText(method, target, {headers = {}, body} = {}) {
  let out = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
  for (const [k, v] of Object.entries(headers)) out += `${k}: ${v}\r\n`;
  if (body !== undefined) out += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  out += '\r\n';
  return body === undefined ? out : Buffer.concat([Buffer.from(out, 'latin1'), Buffer.from(body)]);
}

// One request on a fresh raw connection, then close.
export async function rawRequest(port, method, target, options = {}) {
  const c = await RawConnection.open(port);
  try {
    await c.write(rawRequestText(method, target, options));
    return await c.readResponse({head: method === 'HEAD'});
  } finally {
    c.close();
  }
}
