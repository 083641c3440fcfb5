"""The request-path half: a tiny span record, sampling, and the bounded queue.

Everything here runs on the MCP server's request path, so it does as little as possible:
read two clocks, build one attribute dict, decide sampling, append to a deque. Encoding and
network I/O happen on the exporter thread (`_export.py`).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import deque
from typing import Any, Callable, Mapping

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_SENSITIVE_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|authorization|cookie|credential", re.I)
_rand = random.Random()
_getrandbits = _rand.getrandbits


class SpanRecord:
    """Everything needed to build one OTLP span later, on the exporter thread."""

    __slots__ = (
        "name",
        "trace_id",
        "span_id",
        "parent_span_id",
        "trace_state",
        "start_ns",
        "end_ns",
        "attributes",
        "status_error",
        "status_message",
        "events",
    )

    def __init__(self, name: str, attributes: dict[str, Any], parent: tuple[int, int, str] | None) -> None:
        self.name = name
        self.attributes = attributes
        if parent is not None:
            self.trace_id, self.parent_span_id, self.trace_state = parent
        else:
            self.trace_id = _getrandbits(128) or 1
            self.parent_span_id = None
            self.trace_state = ""
        self.span_id = _getrandbits(64) or 1
        self.status_error = False
        self.status_message = ""
        self.events: list[tuple[str, int, dict[str, Any]]] | None = None
        self.end_ns = 0
        self.start_ns = time.time_ns()

    def record_exception(self, exc: BaseException) -> None:
        import traceback

        try:
            stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4096:]
        except Exception:  # pragma: no cover - defensive
            stack = ""
        attrs = {
            "exception.type": type(exc).__qualname__,
            "exception.message": _cap(str(exc), 1024),
            "exception.stacktrace": stack,
        }
        if self.events is None:
            self.events = []
        self.events.append(("exception", time.time_ns(), attrs))


def parse_traceparent(meta: Any) -> tuple[int, int, str] | None:
    """(trace_id, parent_span_id, tracestate) from a `_meta` mapping carrying W3C trace context."""
    if not meta or not isinstance(meta, Mapping):
        return None
    tp = meta.get("traceparent")
    if not isinstance(tp, str):
        return None
    m = _TRACEPARENT.match(tp.strip().lower())
    if m is None:
        return None
    trace_id = int(m.group(1), 16)
    span_id = int(m.group(2), 16)
    if trace_id == 0 or span_id == 0:
        return None
    ts = meta.get("tracestate")
    return trace_id, span_id, ts if isinstance(ts, str) else ""


def _cap(s: str, limit: int) -> str:
    if len(s) <= limit:
        return s
    b = s.encode("utf-8")[:limit]
    return b.decode("utf-8", "ignore") + "…"


def default_redact(value: Any, depth: int = 0) -> Any:
    """Mask values under sensitive-looking keys (password, token, secret, api_key, ...)."""
    if depth > 8:
        return "[TRUNCATED]"
    if isinstance(value, Mapping):
        return {
            k: ("[REDACTED]" if isinstance(k, str) and _SENSITIVE_KEY.search(k) else default_redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [default_redact(v, depth + 1) for v in value]
    return value


def capture_value(value: Any, redact: Callable[[Any], Any] | None, limit: int) -> str | None:
    """Redact (built-in mask, then the user's `redact`), serialize to JSON and cap at `limit` bytes."""
    try:
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        value = default_redact(value)
        if redact is not None:
            value = redact(value)
            if value is None:
                return None
        s = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        return _cap(s, limit)
    except Exception:
        return None


class Recorder:
    """Sampling decision + bounded queue + counters; shared by the hooks and the exporter."""

    def __init__(
        self,
        *,
        queue_max: int,
        batch_size: int,
        slow_threshold_ms: float,
        sampling: float | None,
    ) -> None:
        self.queue: deque[SpanRecord] = deque()
        self.queue_max = queue_max
        self.batch_size = batch_size
        self.slow_threshold_ns = int(slow_threshold_ms * 1e6)
        self.local_sampling = sampling
        self.sampling = 1.0 if sampling is None else sampling
        self.enabled = True
        self.remote_capture = False
        self.wake = threading.Event()
        # counters (written from the request path without locks: plain int increments under the GIL
        # may rarely lose an update, which is acceptable for statistics)
        self.recorded = 0
        self.sampled_out = 0
        self.dropped_queue_full = 0

    def finish(self, rec: SpanRecord) -> None:
        rec.end_ns = end = time.time_ns()
        if rec.status_error or end - rec.start_ns >= self.slow_threshold_ns:
            p = 1.0
        else:
            p = self.sampling
            if p < 1.0:
                if p <= 0.0 or _rand.random() >= p:
                    self.sampled_out += 1
                    return
        rec.attributes["mcpobs.sample.probability"] = p
        q = self.queue
        if len(q) >= self.queue_max:
            self.dropped_queue_full += 1
            return
        q.append(rec)
        self.recorded += 1
        if len(q) == self.batch_size:
            self.wake.set()
