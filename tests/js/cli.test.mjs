// The `medkit` command line: environment variables, flag precedence, bad options, signals.
import {describe, it, after} from 'node:test';
import assert from 'node:assert/strict';
import {spawn, spawnSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {BIN} from './lib/server.mjs';

const dirs = [];
function tempDir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'medkit-cli-'));
  dirs.push(d);
  return d;
}
after(() => { for (const d of dirs) fs.rmSync(d, {recursive: true, force: true}); });

// Starts `medkit serve` with args and env; resolves {child, base, output()} once listening.
function serve(args, env = {}) {
  const child = spawn(BIN, ['serve', ...args], {env: {...process.env, ...env}, stdio: ['ignore', 'pipe', 'pipe']});
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('did not start:\n' + output)), 15000);
    const onData = (c) => {
      output += c;
      const m = output.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) { clearTimeout(timer); resolve({child, base: m[1], output: () => output}); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`exited ${code}:\n${output}`)); });
  });
}

function exitOf(child) {
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({code, signal})));
}

async function authtoken(base) {
  const r = await fetch(`${base}/v1/e/authtoken`, {method: 'POST',
    body: JSON.stringify({app_id: 'cliext', channel_id: '1', role: 'viewer', user_id: '2'})});
  return {status: r.status, json: await r.json()};
}

const prodConfig = () => {
  const dir = tempDir();
  const file = path.join(dir, 'medkit.json');
  fs.writeFileSync(file, JSON.stringify({extensions: [{client_id: 'cliext',
    secret: Buffer.from('cli-secret-0123456789').toString('base64'), owner_id: '9'}]}));
  return {dir, file};
};

describe('environment variables and flags', () => {
  it('MEDKIT_* variables configure serve (production from the environment)', async () => {
    const {dir, file} = prodConfig();
    const srv = await serve([], {MEDKIT_STAGE: 'production', MEDKIT_CONFIG: file, MEDKIT_PORT: '0',
      MEDKIT_STORE: 'memory', MEDKIT_DATA_DIR: dir, MEDKIT_THREADS: '1', MEDKIT_LOG_LEVEL: 'warn',
      MEDKIT_LISTEN: '127.0.0.1'});
    try {
      assert.match(srv.base, /^http:\/\/127\.0\.0\.1:\d+$/);
      const r = await authtoken(srv.base);
      assert.equal(r.status, 404);  // production: no authtoken
      assert.deepEqual(r.json, {reason: 'Not Found'});
      // memory store: nothing was created in the data dir
      assert.deepEqual(fs.readdirSync(dir).filter((f) => f !== 'medkit.json'), []);
    } finally {
      srv.child.kill('SIGTERM');
      assert.deepEqual(await exitOf(srv.child), {code: 0, signal: null});
    }
  });

  it('a flag wins over its variable', async () => {
    const {dir, file} = prodConfig();
    const srv = await serve(['--stage', 'sandbox', '--port', '0', '--data-dir', dir, '--log-level', 'warn'],
      {MEDKIT_STAGE: 'production', MEDKIT_CONFIG: file});
    try {
      const r = await authtoken(srv.base);
      assert.equal(r.status, 200);
      assert.equal(typeof r.json.token, 'string');
      assert.ok(fs.existsSync(path.join(dir, 'signing.key')));
      assert.ok(fs.existsSync(path.join(dir, 'db')));
    } finally {
      srv.child.kill('SIGINT');  // SIGINT drains like SIGTERM
      assert.deepEqual(await exitOf(srv.child), {code: 0, signal: null});
    }
  });

  it('the config file stage applies when neither flag nor variable is given', async () => {
    const {dir} = prodConfig();
    const file = path.join(dir, 'stage.json');
    fs.writeFileSync(file, JSON.stringify({stage: 'production', extensions: [{client_id: 'x',
      secret: Buffer.from('abc').toString('base64')}]}));
    const env = {...process.env};
    delete env.MEDKIT_STAGE;
    const srv = await serve(['--config', file, '--port', '0', '--store', 'memory', '--log-level', 'warn'], env);
    try {
      assert.equal((await authtoken(srv.base)).status, 404);
    } finally {
      srv.child.kill('SIGTERM');
      await exitOf(srv.child);
    }
  });
});

describe('refused start-up', () => {
  const cases = [
    ['an unknown stage', ['--stage', 'staging'], /stage must be sandbox or production/],
    ['an unknown store', ['--store', 'redis'], /store must be rocksdb or memory/],
    ['production without extensions', ['--stage', 'production'], /needs at least one extension/],
    ['a bad listen address', ['--listen', 'not-an-ip'], /bad listen address/],
  ];
  for (const [name, args, message] of cases) {
    it(name, () => {
      const store = args.includes('--store') ? [] : ['--store', 'memory'];
      const r = spawnSync(BIN, ['serve', '--port', '0', ...store, ...args],
        {encoding: 'utf8', env: {...process.env, MEDKIT_STAGE: ''}});
      assert.equal(r.status, 2, r.stdout + r.stderr);
      assert.match(r.stdout + r.stderr, message);
    });
  }
  it('a config file with an unknown key', () => {
    const dir = tempDir();
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, JSON.stringify({extensoins: []}));
    const r = spawnSync(BIN, ['serve', '--port', '0', '--config', file], {encoding: 'utf8'});
    assert.equal(r.status, 2);
    assert.match(r.stdout + r.stderr, /unknown key "extensoins"/);
  });
});

describe('medkit token', () => {
  it('refuses to sign without a key source', () => {
    const r = spawnSync(BIN, ['token', '--client-id', 'x'], {encoding: 'utf8'});
    assert.equal(r.status, 2);
    assert.match(r.stderr, /one of --secret, --config or --data-dir is required/);
  });
  it('refuses a secret that is not base64', () => {
    const r = spawnSync(BIN, ['token', '--client-id', 'x', '--secret', '***'], {encoding: 'utf8'});
    assert.equal(r.status, 2);
  });
  it('prints a JWT with the claims asked for', () => {
    const r = spawnSync(BIN, ['token', '--client-id', 'x', '--role', 'backend', '--channel', '5', '--user', '6',
      '--secret', Buffer.from('k').toString('base64'), '--ttl', '120'], {encoding: 'utf8'});
    assert.equal(r.status, 0);
    const [, payload] = r.stdout.trim().split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64').toString());
    assert.equal(claims.role, 'backend');
    assert.equal(claims.channel_id, '5');
    assert.equal(claims.user_id, '6');
    assert.equal(claims.extension_id, 'x');
    assert.equal(claims.allowed_stage, undefined);
    assert.ok(Math.abs(claims.exp - (Math.floor(Date.now() / 1000) + 120)) <= 5);
  });
});
