// Spans the application creates inside a handler become children of the MCP span when the
// application registered an OpenTelemetry context manager; no global tracer provider is installed.
// Its own file: a context manager (AsyncLocalStorage) is process-wide.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { configureMCPTelemetry } from '../src/index.js';
import { Appliance, newObsServer } from './appliance.mjs';
import { addTool, buildServer, connect, skipOn } from './lines.mjs';

let app;
before(async () => {
  app = await new Appliance().start();
});
after(async () => {
  await app.stop();
});

for (const flavour of ['ts1', 'ts2']) {
  test(`app spans are children of the MCP span (${flavour}); global tracer provider untouched`, { skip: skipOn(flavour) }, async () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      const mem = new InMemorySpanExporter();
      const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(mem)] });
      const tracer = provider.getTracer('app');
      const globalBefore = trace.getTracerProvider();
      const [serverId, key] = await newObsServer(app, `ctx-${flavour}`);
      const server = await buildServer(flavour);
      addTool(server, flavour, 'work', {}, async () => {
        await Promise.resolve();
        return tracer.startActiveSpan('db.query', (span) => {
          span.end();
          return { content: [{ type: 'text', text: 'ok' }] };
        });
      });
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
