// The package as a user installs it: `npm pack` (what `npm install --install-links
// ./sdk/typescript` copies), installed into an empty project, imported by name.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

test('packed package installs into an empty project and instruments a server', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpobs-ts-pkg-'));
  try {
    const npm = (args) => execFileSync('npm', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    npm(['pack', ROOT, '--pack-destination', dir, '--silent']);
    const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    assert.ok(tgz, 'npm pack produced no tarball');
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }));
    npm(['install', `./${tgz}`, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error']);
    // the MCP SDK is the application's (a peer dependency); take the one the tests installed
    const mcp = pathToFileURL(path.join(ROOT, 'node_modules/@modelcontextprotocol/sdk/dist/esm/server/mcp.js')).href;
    writeFileSync(
      path.join(dir, 'app.mjs'),
      `import { McpServer } from ${JSON.stringify(mcp)};
import { configureMCPTelemetry, version } from '@mcp-obs/server';
const h = configureMCPTelemetry(new McpServer({ name: 'packed', version: '1' }), { apiKey: 'k', endpoint: 'http://127.0.0.1:9' });
console.log(JSON.stringify({ version, integration: h.integration, circuit: h.stats().circuitState }));
await h.shutdown(100);
`,
    );
    const out = execFileSync(process.execPath, ['app.mjs'], { cwd: dir, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), { version: '0.1.0', integration: 'mcp-ts1', circuit: 'closed' });
    const files = execFileSync('npm', ['ls', '--all', '--parseable'], { cwd: dir, encoding: 'utf8' });
    assert.match(files, /@opentelemetry[\\/]exporter-trace-otlp-proto/);
    assert.match(files, /@opentelemetry[\\/]sdk-trace-base/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
