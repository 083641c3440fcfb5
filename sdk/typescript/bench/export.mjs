// CPU cost of the export path per span, end to end: span records queued -> encoded -> gzip ->
// POSTed to the REAL appliance (MCPOBS_BINARY) by the SDK's Exporter, as a busy server would.
// Reports this process's CPU (user + system, all threads: encoder, gzip in the thread pool, HTTP)
// and the appliance's CPU per exported span.
//   node sdk/typescript/bench/export.mjs [--spans 51200] [--rounds 5]
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { CircuitBreaker, Exporter } from '../src/export.js';
import { Recorder, SpanRecord, TARGET_TOOL } from '../src/record.js';
import { Appliance } from '../test/appliance.mjs';

const { values } = parseArgs({ options: { spans: { type: 'string', default: '51200' }, rounds: { type: 'string', default: '5' } } });
const SPANS = Number(values.spans);
const ROUNDS = Number(values.rounds);
const cpuOf = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) / 100) * 1e6; // us (USER_HZ 100)
};

const app = await new Appliance().start();
try {
  const [, key] = await app.createServer('bench');
  const recorder = new Recorder({ queueMax: SPANS, batchSize: 256, slowThresholdMs: 1000, sampling: null });
  const resource = resourceFromAttributes({ 'service.name': 'bench', 'telemetry.sdk.name': '@mcp-obs/server', 'telemetry.sdk.language': 'nodejs', 'telemetry.sdk.version': '0.1.0' });
  const exporter = new Exporter(recorder, {
    endpoint: app.base, apiKey: key, resource, scope: { name: '@mcp-obs/server', version: '0.1.0' },
    exportIntervalMs: 1000, timeoutMs: 5000, maxRetries: 3,
    breaker: new CircuitBreaker({ threshold: 3, baseMs: 1000, maxMs: 60000 }),
    configRefreshMs: 3600000, log: () => {}, userAgent: 'bench',
  });
  exporter.start();
  const shared = { 'mcp.protocol.version': '2025-11-25', 'network.transport': 'pipe', 'mcp.client.name': 'bench-client', 'mcp.client.version': '1.0.0' };
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; ${SPANS} spans per round`);
  for (let r = 0; r < ROUNDS + 1; r++) {
    for (let i = 0; i < SPANS; i++) {
      const rec = new SpanRecord('tools/call', TARGET_TOOL, 'echo', i, shared, undefined);
      rec.end = rec.start + 0.02;
      recorder.finish(rec);
    }
    const before = exporter.exported;
    const a0 = cpuOf(app.proc.pid);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await exporter.flush(60000);
    const c = process.cpuUsage(c0);
    const wall = performance.now() - t0;
    await new Promise((res) => setTimeout(res, 300)); // the appliance finishes its part
    const n = exporter.exported - before;
    const a = cpuOf(app.proc.pid) - a0;
    if (r === 0) continue; // warm-up
    console.log(`round ${r}: ${n} spans, sdk cpu ${((c.user + c.system) / n).toFixed(2)} us/span (wall ${((wall * 1000) / n).toFixed(2)} us/span), appliance cpu ${(a / n).toFixed(2)} us/span`);
  }
  await exporter.shutdown(1000);
} finally {
  await app.stop();
}
