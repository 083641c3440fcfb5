// Run sdk/conformance/scenario.json (unchanged): make its calls, check the spans the appliance
// stored. The TypeScript twin of sdk/python/tests/scenario.py.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SCENARIO = JSON.parse(readFileSync(path.resolve(HERE, '../../conformance/scenario.json'), 'utf8'));
export const N_STEPS = SCENARIO.steps.length;

/** Send every step (the client already did `initialize`) through `conn.request`. Returns
 * [step, outcome] pairs. */
export async function runSteps(conn, scenario = SCENARIO) {
  const outcomes = [];
  for (const step of scenario.steps) {
    const req = step.request;
    if (req.method === 'initialize') {
      outcomes.push([step, 'result']);
      continue;
    }
    let outcome;
    try {
      const res = await conn.request(req.method, req.params);
      outcome = res && res.isError === true ? 'result_is_error' : 'result';
    } catch (e) {
      if (e && e.name !== 'RpcError' && !Number.isSafeInteger(e.code)) throw e;
      outcome = 'error';
    }
    outcomes.push([step, outcome]);
  }
  return outcomes;
}

export function checkOutcomes(outcomes) {
  for (const [step, outcome] of outcomes) {
    const want = Array.isArray(step.expect_response) ? step.expect_response : [step.expect_response];
    assert.ok(want.includes(outcome), `step ${step.id}: response ${outcome}, expected ${want}`);
  }
}

const matches = (value, want) => (Array.isArray(want) ? want.includes(value) : value === want);

/** The step's `expect_span` with a library variant's overrides (objects merged). */
export function expectedSpan(step, variant, scenario = SCENARIO) {
  const exp = { ...step.expect_span };
  const over = (((scenario.library_variants || {})[variant || ''] || {}).steps || {})[step.id];
  if (over) {
    for (const [k, v] of Object.entries(over)) {
      if (v && typeof v === 'object' && !Array.isArray(v) && exp[k] && typeof exp[k] === 'object') exp[k] = { ...exp[k], ...v };
      else exp[k] = v;
    }
  }
  return exp;
}

/** Exactly one server span per step, in order, with the expected canonical fields. */
export function checkSpans(spans, transport, { scenario = SCENARIO, variant = null } = {}) {
  const steps = scenario.steps;
  const server = spans
    .filter((s) => s.kind === 'server')
    .sort((a, b) => (BigInt(a.start_time_unix_nano) < BigInt(b.start_time_unix_nano) ? -1 : 1));
  const names = server.map((s) => s.name);
  assert.equal(server.length, steps.length, `${server.length} server spans for ${steps.length} steps: ${names}`);
  const tcfg = scenario.transports[transport];
  steps.forEach((step, i) => {
    const span = server[i];
    const exp = expectedSpan(step, variant, scenario);
    const sid = step.id;
    assert.equal(span.name, exp.name, `${sid}: name ${span.name}`);
    assert.equal(span.kind, exp.kind, `${sid}: kind ${span.kind}`);
    assert.equal(span.status.code, exp.status, `${sid}: status ${JSON.stringify(span.status)}`);
    const mcp = span.mcp;
    for (const [k, v] of Object.entries({ ...(exp.mcp || {}), ...(tcfg.mcp_expect || {}) })) {
      assert.ok(matches(mcp[k], v), `${sid}: mcp.${k}=${JSON.stringify(mcp[k])}, expected ${JSON.stringify(v)}`);
    }
    for (const k of [...(exp.mcp_present || []), ...(tcfg.mcp_present || [])]) {
      if (k === 'session_id' && step.request.method === 'initialize') continue; // assigned by its response
      assert.ok(mcp[k] !== null && mcp[k] !== undefined && mcp[k] !== '', `${sid}: mcp.${k} missing`);
    }
    for (const [k, v] of Object.entries(exp.attributes || {})) {
      assert.equal(span.attributes[k], v, `${sid}: attribute ${k}=${JSON.stringify(span.attributes[k])}`);
    }
    for (const k of exp.attributes_present || []) {
      assert.ok(k in span.attributes, `${sid}: attribute ${k} missing: ${JSON.stringify(span.attributes)}`);
    }
    for (const k of exp.attributes_absent || []) {
      assert.ok(!(k in span.attributes), `${sid}: attribute ${k} must not be recorded`);
    }
    for (const ev of exp.events_present || []) {
      assert.ok(span.events.map((e) => e.name).includes(ev), `${sid}: event ${ev} missing`);
    }
    if ('trace_id' in exp) {
      assert.equal(span.trace_id, exp.trace_id, `${sid}: trace_id ${span.trace_id}`);
      assert.equal(span.parent_span_id, exp.parent_span_id, `${sid}: parent ${span.parent_span_id}`);
    } else {
      assert.equal(span.parent_span_id, null, `${sid}: unexpected parent`);
    }
    assert.ok(span.sample_probability > 0 && span.sample_probability <= 1, `${sid}: sample_probability`);
  });
}
