// Drive the REAL mcp-obs binary: start it on a temp dir, log in, create servers/keys, read spans.
// (The TypeScript twin of sdk/python/tests/appliance.py.)

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PASSWORD = 'conformance-pass-123';

export function binaryPath() {
  return process.env.MCPOBS_BINARY || path.resolve(HERE, '../../../target/release/mcp-obs');
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Temporary directories made here, removed when the test process exits (each test file runs in
// its own process), so that repeated runs do not fill the temp directory.
const madeDirs = [];
process.on('exit', () => {
  for (const dir of madeDirs) rmSync(dir, { recursive: true, force: true });
});

/** A new temporary directory, removed when the test process exits. */
export function tempDir(prefix) {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  madeDirs.push(dir);
  return dir;
}

export class Appliance {
  constructor(dataDir = path.join(tempDir('mcpobs-ts-'), 'data'), listen = '127.0.0.1:0') {
    this.dataDir = dataDir;
    this.listen = listen;
    this.proc = null;
    this.base = '';
    this.csrf = '';
    this.cookie = '';
    this.stderrPath = `${dataDir}.stderr`;
  }

  async start() {
    const binary = binaryPath();
    if (!existsSync(binary)) throw new Error(`appliance binary not found at ${binary}; run 'cargo build --release' first`);
    const err = openSync(this.stderrPath, 'a');
    const startAt = statSync(this.stderrPath).size;
    this.proc = spawn(binary, ['serve', '--data', this.dataDir, '--listen', this.listen], {
      stdio: ['ignore', 'ignore', err],
      env: { ...process.env, MCPOBS_ADMIN_PASSWORD: PASSWORD },
    });
    let exited = false;
    this.proc.once('exit', () => {
      exited = true;
    });
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline) {
      const text = readFileSync(this.stderrPath).subarray(startAt).toString('utf8');
      const m = /mcp-obs listening on (http:\/\/\S+)/.exec(text);
      if (m) {
        this.base = m[1].replace(/\/$/, '');
        await this.login();
        return this;
      }
      if (exited) throw new Error(`appliance exited early:\n${text}`);
      await sleep(50);
    }
    throw new Error('appliance did not report its address');
  }

  async stop() {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 10000);
    await done;
    clearTimeout(t);
  }

  async request(method, urlPath, body) {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.csrf) headers['x-csrf-token'] = this.csrf;
    if (this.cookie) headers.cookie = this.cookie;
    const res = await fetch(this.base + urlPath, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    const setCookie = res.headers.get('set-cookie');
    if (setCookie) this.cookie = setCookie.split(';')[0];
    const text = await res.text();
    let json;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = { raw: text };
    }
    return [res.status, json];
  }

  async login() {
    const [status, body] = await this.request('POST', '/api/v1/session', { username: 'admin', password: PASSWORD });
    if (status !== 200) throw new Error(`login failed: ${status} ${JSON.stringify(body)}`);
    this.csrf = body.csrf_token;
  }

  /** A new appliance-side server: [serverId, apiKey]. */
  async createServer(name, fields = {}) {
    const [status, body] = await this.request('POST', '/api/v1/orgs/default/servers', { name, ...fields });
    if (status !== 201) throw new Error(`create server failed: ${status} ${JSON.stringify(body)}`);
    return [body.server.id, body.api_key.key];
  }

  async spans(serverId, filters = {}) {
    const out = [];
    const params = new URLSearchParams({ server: String(serverId), limit: '1000', ...filters });
    for (;;) {
      const [status, body] = await this.request('GET', `/api/v1/orgs/default/spans?${params}`);
      if (status !== 200) throw new Error(`spans: ${status} ${JSON.stringify(body)}`);
      out.push(...body.spans);
      if (!body.next_cursor) return out;
      params.set('cursor', body.next_cursor);
    }
  }

  /** Wait until at least `n` spans are stored, then a moment more (duplicates would be a bug). */
  async waitSpans(serverId, n, { timeoutMs = 20000, ...filters } = {}) {
    const deadline = Date.now() + timeoutMs;
    let spans = [];
    while (Date.now() < deadline) {
      spans = await this.spans(serverId, filters);
      if (spans.length >= n) {
        await sleep(300);
        return this.spans(serverId, filters);
      }
      await sleep(200);
    }
    return spans;
  }

  async trace(traceId) {
    const [status, body] = await this.request('GET', `/api/v1/orgs/default/traces/${traceId}`);
    if (status !== 200) throw new Error(`trace: ${status} ${JSON.stringify(body)}`);
    return body;
  }
}

let counter = 0;
/** A fresh appliance-side server per test: [serverId, apiKey]. */
export function newObsServer(appliance, label) {
  counter += 1;
  return appliance.createServer(`${label.slice(0, 60)}-${process.pid}-${counter}`);
}
