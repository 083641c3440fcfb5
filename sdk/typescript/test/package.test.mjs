// The package as a user installs it, into an empty project, imported by name:
// * from the folder, with the plain command of the README (`npm install ./sdk/typescript` in a
//   project whose root holds the folder): npm links the folder and installs its dependencies into
//   the project; none of the test harness (MCP SDK copies, TypeScript, zod: test/package.json)
//   comes along;
// * packed (`npm pack`: what a published package, or `npm install --install-links`, installs).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// the MCP SDK is the application's (a peer dependency); take the one the harness installed
const MCP = pathToFileURL(path.join(ROOT, 'test/node_modules/@modelcontextprotocol/sdk/dist/esm/server/mcp.js')).href;
const APP = `import { McpServer } from ${JSON.stringify(MCP)};
import { configureMCPTelemetry, version } from '@mcp-obs/server';
const h = configureMCPTelemetry(new McpServer({ name: 'packed', version: '1' }), { apiKey: 'k', endpoint: 'http://127.0.0.1:9' });
console.log(JSON.stringify({ version, integration: h.integration, circuit: h.stats().circuitState }));
await h.shutdown(100);
`;
const NPM_OPTS = ['--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'];

function project() {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpobs-ts-pkg-'));
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }));
  writeFileSync(path.join(dir, 'app.mjs'), APP);
  const npm = (args) => execFileSync('npm', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const run = () => JSON.parse(execFileSync(process.execPath, ['app.mjs'], { cwd: dir, encoding: 'utf8' }));
  return { dir, npm, run };
}

test('npm install ./sdk/typescript (plain folder install) works and brings no harness package', () => {
  const { dir, npm, run } = project();
  try {
    // the folder as a clone has it: the package's files, no node_modules
    const pkg = path.join(dir, 'sdk', 'typescript');
    mkdirSync(pkg, { recursive: true });
    for (const f of ['package.json', 'package-lock.json', 'README.md', 'src']) cpSync(path.join(ROOT, f), path.join(pkg, f), { recursive: true });
    npm(['install', './sdk/typescript', ...NPM_OPTS]);
    assert.ok(lstatSync(path.join(dir, 'node_modules/@mcp-obs/server')).isSymbolicLink(), 'npm links a folder inside the project');
    assert.deepEqual(run(), { version: '0.1.0', integration: 'mcp-ts1', circuit: 'closed' });
    const installed = (p) => existsSync(path.join(dir, 'node_modules', p));
    assert.ok(installed('@opentelemetry/exporter-trace-otlp-proto') && installed('@opentelemetry/sdk-trace-base'));
    for (const p of ['@modelcontextprotocol/sdk', '@modelcontextprotocol/server', 'typescript', 'zod']) {
      assert.ok(!installed(p), `${p} was installed with the package`);
    }
    assert.ok(!existsSync(path.join(pkg, 'node_modules')), 'nothing installed inside the folder');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('packed package installs into an empty project and instruments a server', () => {
  const { dir, npm, run } = project();
  try {
    npm(['pack', ROOT, '--pack-destination', dir, '--silent']);
    const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    assert.ok(tgz, 'npm pack produced no tarball');
    npm(['install', `./${tgz}`, ...NPM_OPTS]);
    assert.deepEqual(run(), { version: '0.1.0', integration: 'mcp-ts1', circuit: 'closed' });
    const files = npm(['ls', '--all', '--parseable']);
    assert.match(files, /@opentelemetry[\\/]exporter-trace-otlp-proto/);
    assert.match(files, /@opentelemetry[\\/]sdk-trace-base/);
    assert.doesNotMatch(files, /node_modules[\\/](typescript|zod)$/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
