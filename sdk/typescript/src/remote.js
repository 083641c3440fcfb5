// Remote settings: `GET {endpoint}/v1/config` with the API key, refreshed every
// `refresh_interval_secs` (or MCPOBS_CONFIG_REFRESH_S), applied to the recorder. Unref'd: it never
// keeps the process alive, and a failure only leaves the previous settings in place.

import http from 'node:http';
import https from 'node:https';

/** Fetch the settings once, apply them, and schedule the next fetch. */
export function fetchConfig(exp) {
  if (exp.stopped) return;
  let interval = exp.configRefreshMs || 60000;
  const done = () => {
    if (exp.stopped) return;
    exp.configTimer = setTimeout(() => fetchConfig(exp), interval);
    exp.configTimer.unref();
  };
  let url;
  try {
    url = new URL(`${exp.endpoint}/v1/config`);
  } catch (e) {
    exp.configError = String(e);
    return;
  }
  const mod = url.protocol === 'https:' ? https : http;
  const headers = { Authorization: `Bearer ${exp.apiKey}`, 'User-Agent': exp.userAgent };
  const req = mod.get(url, { headers, timeout: exp.timeoutMs }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('error', () => {});
    res.on('end', () => {
      try {
        if (res.statusCode === 200) {
          const cfg = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          exp.applyConfig(cfg);
          if (exp.configRefreshMs === null && typeof cfg.refresh_interval_secs === 'number') {
            interval = Math.max(1, cfg.refresh_interval_secs) * 1000;
          }
          exp.configError = null;
        } else {
          exp.configError = `HTTP ${res.statusCode}`;
          exp.log(`GET /v1/config answered ${res.statusCode}`);
        }
      } catch (e) {
        exp.configError = String(e);
        exp.log(`GET /v1/config failed: ${e}`);
      }
      done();
    });
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => {
    exp.configError = String(e);
    exp.log(`GET /v1/config failed: ${e && e.message}`);
    done();
  });
  req.on('socket', (s) => s.unref());
}

/** What the appliance's settings change: enabled, sampling (unless set locally), argument
 * capture, the slow-call threshold. */
export function applyConfig(rec, cfg) {
  if (typeof cfg.telemetry_enabled === 'boolean') rec.enabled = cfg.telemetry_enabled;
  if (rec.localSampling === null) {
    const rate = cfg.sampling_rate;
    if (typeof rate === 'number' && rate >= 0 && rate <= 1) rec.sampling = rate;
  }
  if (typeof cfg.capture_arguments === 'boolean') rec.remoteCapture = cfg.capture_arguments;
  const slow = cfg.slow_threshold_ms;
  if (typeof slow === 'number' && slow > 0) rec.slowThresholdMs = slow;
}
