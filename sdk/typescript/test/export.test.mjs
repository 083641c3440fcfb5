// The exporter's concurrency: at most EXPORTS_IN_FLIGHT_MAX batches in flight, overlapping
// while the appliance answers, one at a time after a failure (half-open probes with one batch),
// and a flush / shutdown that sends everything. Against a local OTLP endpoint that holds every
// POST until the test answers it, so the overlap is observed, not timed.

import assert from 'node:assert/strict';
import http from 'node:http';
import zlib from 'node:zlib';
import { test } from 'node:test';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { CircuitBreaker, EXPORTS_IN_FLIGHT_MAX, Exporter } from '../src/export.js';
import { Recorder, SpanRecord, TARGET_TOOL } from '../src/record.js';
import { decode, spansOf } from './otlp-decode.mjs';
import { sleep } from './appliance.mjs';

const BATCH = 4;

/** An OTLP endpoint whose POSTs wait in `held` until `answer(status)`; counts spans received. */
async function holdingCollector() {
  const c = { held: [], open: 0, maxOpen: 0, posts: 0, spans: 0, waiters: [] };
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (x) => chunks.push(x));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
      c.posts++;
      c.open++;
      c.maxOpen = Math.max(c.maxOpen, c.open);
      c.held.push({ res, spans: spansOf(decode(body)).length });
      for (const w of c.waiters.splice(0)) w();
    });
  });
  /** Answer the oldest held POST. */
  c.answer = (status = 200) => {
    const h = c.held.shift();
    c.open--;
    if (status === 200) c.spans += h.spans;
    h.res.writeHead(status, status === 200 ? { 'content-type': 'application/x-protobuf', 'content-length': 0 } : { 'content-length': 0 });
    h.res.end();
  };
  /** Wait (bounded) until `n` POSTs are held; returns how many are. */
  c.untilHeld = async (n, boundMs = 10000) => {
    const deadline = Date.now() + boundMs;
    while (c.held.length < n && Date.now() < deadline) {
      await Promise.race([new Promise((r) => c.waiters.push(r)), sleep(50)]);
    }
    return c.held.length;
  };
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  c.url = `http://127.0.0.1:${srv.address().port}`;
  c.close = () =>
    new Promise((r) => {
      srv.closeAllConnections();
      srv.close(r);
    });
  return c;
}

function makeExporter(url, breaker) {
  const recorder = new Recorder({ queueMax: 1000, batchSize: BATCH, slowThresholdMs: 1000, sampling: null });
  const exporter = new Exporter(recorder, {
    endpoint: url,
    apiKey: 'mcpobs_live_test',
    resource: resourceFromAttributes({ 'service.name': 'export-test' }),
    scope: { name: '@mcp-obs/server', version: '0.1.0' },
    exportIntervalMs: 3600000, // drained by the test and by flush only
    timeoutMs: 30000,
    maxRetries: 5,
    breaker: breaker || new CircuitBreaker({ threshold: 3, baseMs: 1000, maxMs: 60000 }),
    configRefreshMs: 3600000,
    log: () => {},
    userAgent: 'export-test',
  });
  return { recorder, exporter };
}

function record(recorder, n) {
  for (let i = 0; i < n; i++) {
    const rec = new SpanRecord('tools/call', TARGET_TOOL, 'echo', i, null, undefined);
    recorder.finish(rec);
  }
}

test('batches overlap up to EXPORTS_IN_FLIGHT_MAX, never more; shutdown sends everything', async () => {
  assert.ok(EXPORTS_IN_FLIGHT_MAX >= 2);
  const c = await holdingCollector();
  const { recorder, exporter } = makeExporter(c.url);
  try {
    exporter.started = true; // timers not needed: the test drains
    const total = BATCH * 7;
    record(recorder, total);
    exporter.drain();
    assert.equal(exporter.inFlightCount, EXPORTS_IN_FLIGHT_MAX);
    // the appliance sees them together, before answering any: with one batch in flight it would
    // see one (and this wait would end at its bound)
    assert.equal(await c.untilHeld(EXPORTS_IN_FLIGHT_MAX), EXPORTS_IN_FLIGHT_MAX);
    exporter.drain(); // nothing more starts while every lane is busy
    assert.equal(exporter.inFlightCount, EXPORTS_IN_FLIGHT_MAX);
    const stats = { queueSize: recorder.queue.length + exporter.pendingSpans };
    assert.equal(stats.queueSize, total);
    // answer as POSTs arrive while shutdown flushes the rest
    let answering = true;
    const answerer = (async () => {
      while (answering) {
        if (c.held.length) c.answer(200);
        else await Promise.race([new Promise((r) => c.waiters.push(r)), sleep(20)]);
      }
    })();
    const flushed = await exporter.shutdown(20000);
    answering = false;
    await answerer;
    assert.equal(flushed, true);
    assert.equal(exporter.exported, total);
    assert.equal(c.spans, total);
    assert.equal(recorder.queue.length + exporter.pendingSpans, 0);
    assert.ok(c.maxOpen <= EXPORTS_IN_FLIGHT_MAX, `${c.maxOpen} POSTs open at once`);
    assert.equal(exporter.maxConcurrent, EXPORTS_IN_FLIGHT_MAX);
    assert.equal(c.posts, total / BATCH);
  } finally {
    await c.close();
  }
});

test('after a failure one batch at a time: retry, half-open probe; two again once closed', async () => {
  const c = await holdingCollector();
  const breaker = new CircuitBreaker({ threshold: 2, baseMs: 1, maxMs: 5 });
  const { recorder, exporter } = makeExporter(c.url, breaker);
  try {
    exporter.started = true;
    record(recorder, BATCH * 5);
    exporter.drain();
    assert.equal(await c.untilHeld(2), 2);
    c.answer(503);
    c.answer(503);
    await exporter.anyInFlight();
    while (exporter.inFlightCount) await exporter.anyInFlight();
    assert.equal(breaker.state, 'open');
    assert.equal(exporter.pendingSpans, 2 * BATCH); // both batches kept for their retries
    breaker.notBefore = 0; // the backoff has elapsed
    exporter.drain();
    assert.equal(breaker.state, 'half_open');
    assert.equal(exporter.inFlightCount, 1); // the probe goes alone
    assert.equal(await c.untilHeld(1), 1);
    c.answer(503); // probe fails: open again
    while (exporter.inFlightCount) await exporter.anyInFlight();
    assert.equal(breaker.state, 'open');
    breaker.notBefore = 0;
    exporter.drain();
    assert.equal(exporter.inFlightCount, 1);
    assert.equal(await c.untilHeld(1), 1);
    c.answer(200); // probe succeeds: closed, no failure counted
    while (exporter.inFlightCount) await exporter.anyInFlight();
    assert.equal(breaker.state, 'closed');
    exporter.drain();
    assert.equal(exporter.inFlightCount, 2); // the retried batch and a new one, together again
    let answering = true;
    const answerer = (async () => {
      while (answering) {
        if (c.held.length) c.answer(200);
        else await Promise.race([new Promise((r) => c.waiters.push(r)), sleep(20)]);
      }
    })();
    assert.equal(await exporter.shutdown(20000), true);
    answering = false;
    await answerer;
    assert.equal(exporter.exported, BATCH * 5);
    assert.equal(c.spans, BATCH * 5);
    assert.equal(exporter.droppedExport, 0);
  } finally {
    await c.close();
  }
});
