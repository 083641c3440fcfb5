// Spans the application creates inside a handler become children of the MCP span when the
// application registered an OpenTelemetry context manager; no global tracer provider is installed.
// Its own file: a context manager (AsyncLocalStorage) is process-wide.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { configureMCPTelemetry } from '../src/index.js';
import { Appliance, newObsServer, sleep } from './appliance.mjs';
import { addTool, buildServer, connect, skipOn } from './lines.mjs';

let app;
before(async () => {
  app = await new Appliance().start();
});
after(async () => {
  await app.stop();
});

/** An appliance server and an MCP server whose `work` tool opens a `db.query` span of the
 * application's own tracer (recorded in `mem`), inside whatever context is active. */
async function tracedServer(flavour, name) {
  const mem = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(mem)] });
  const tracer = provider.getTracer('app');
  const [serverId, key] = await newObsServer(app, name);
  const server = await buildServer(flavour);
  addTool(server, flavour, 'work', {}, async () => {
    await Promise.resolve();
    return tracer.startActiveSpan('db.query', (span) => {
      span.end();
      return { content: [{ type: 'text', text: 'ok' }] };
    });
  });
  return { mem, serverId, key, server };
}

for (const flavour of ['ts1', 'ts2']) {
  test(`app spans are children of the MCP span (${flavour}); global tracer provider untouched`, { skip: skipOn(flavour) }, async () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      const globalBefore = trace.getTracerProvider();
      const { mem, serverId, key, server } = await tracedServer(flavour, `ctx-${flavour}`);
      const h = configureMCPTelemetry(server, { apiKey: key, endpoint: app.base });
      assert.equal(trace.getTracerProvider(), globalBefore); // no global provider installed
      const conn = await connect({ server }, flavour);
      await conn.request('tools/call', { name: 'work', arguments: {} });
      await conn.close();
      assert.ok(await h.flush(10000));
      await h.shutdown();
      const [mcpSpan] = await app.spans(serverId, { tool: 'work' });
      const [child] = mem.getFinishedSpans();
      assert.equal(child.name, 'db.query');
      assert.equal(child.spanContext().traceId, mcpSpan.trace_id);
      assert.equal(child.parentSpanContext.spanId, mcpSpan.span_id);
    } finally {
      context.disable();
    }
  });
}

for (const flavour of ['ts1', 'ts2']) {
  test(`a context manager registered after the server connected is picked up (${flavour})`, { skip: skipOn(flavour) }, async () => {
    // the export tick re-probes the context manager; a server with a connect this SDK knows then
    // installs the `_onrequest` wrapper that runs handlers in the span's context on first need
    const old = process.env.MCPOBS_EXPORT_INTERVAL_MS;
    process.env.MCPOBS_EXPORT_INTERVAL_MS = '20';
    let manager = null;
    try {
      const { mem, serverId, key, server } = await tracedServer(flavour, `ctx-late-${flavour}`);
      const h = configureMCPTelemetry(server, { apiKey: key, endpoint: app.base });
      const conn = await connect({ server }, flavour);
      await conn.request('tools/call', { name: 'work', arguments: {} }); // no context manager yet
      manager = new AsyncLocalStorageContextManager().enable();
      context.setGlobalContextManager(manager);
      await sleep(200); // a few export ticks
      await conn.request('tools/call', { name: 'work', arguments: {} });
      await conn.close();
      assert.ok(await h.flush(10000));
      await h.shutdown();
      const spans = await app.spans(serverId, { tool: 'work' });
      assert.equal(spans.length, 2);
      const children = mem.getFinishedSpans();
      assert.equal(children.length, 2);
      // the first ran without a context manager: a root span of its own
      assert.ok(!spans.some((s) => s.trace_id === children[0].spanContext().traceId));
      const parent = spans.find((s) => s.trace_id === children[1].spanContext().traceId);
      assert.ok(parent, 'the second call\'s app span is in an MCP span\'s trace');
      assert.equal(children[1].parentSpanContext.spanId, parent.span_id);
    } finally {
      if (old === undefined) delete process.env.MCPOBS_EXPORT_INTERVAL_MS;
      else process.env.MCPOBS_EXPORT_INTERVAL_MS = old;
      if (manager !== null) context.disable();
    }
  });
}
