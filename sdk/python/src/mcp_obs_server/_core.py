"""Options, the public handle, and the library-neutral request observer used by every integration."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.context.context import Context as OtelContext

# The fast path of `Observer.activate` uses two private names of opentelemetry-api (stable for
# years, but private); if a release renames them, the public calls do the same, slower.
try:
    from opentelemetry.context import _RUNTIME_CONTEXT
    from opentelemetry.trace.propagation import _SPAN_KEY
except ImportError:  # pragma: no cover - depends on the installed opentelemetry-api
    _RUNTIME_CONTEXT = None
    _SPAN_KEY = None
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

import contextvars

from ._export import CircuitBreaker, Exporter
from ._record import Recorder, SpanRecord, capture_value, parse_traceparent

__version__ = "0.1.0"
current_record: contextvars.ContextVar[SpanRecord | None] = contextvars.ContextVar("mcp_obs_record", default=None)
SDK_NAME = "mcp-obs-server-python"
_SAMPLED = otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED)


class _McpSpan(otel_trace.NonRecordingSpan):
    """The MCP span as the OpenTelemetry parent of the spans a handler creates.

    A `NonRecordingSpan` whose `SpanContext` is built on first use (a child span, `inject`,
    `get_current_span().get_span_context()`), not on every request: most handlers create no span.
    """

    __slots__ = ("_rec", "_sc")

    def __init__(self, rec: SpanRecord) -> None:  # no super().__init__: the context is lazy
        self._rec = rec
        self._sc = None

    @property
    def _context(self) -> otel_trace.SpanContext:  # type: ignore[override]
        sc = self._sc
        if sc is None:
            rec = self._rec
            sc = self._sc = otel_trace.SpanContext(rec.trace_id, rec.span_id, False, _SAMPLED)
        return sc

    def get_span_context(self) -> otel_trace.SpanContext:
        return self._context


def _env_float(name: str, default: float) -> float:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return float(v)
    except ValueError:
        return default


@dataclass
class RequestInfo:
    """What an `identify` callback receives for each request."""

    method: str
    params: Mapping[str, Any] | None
    headers: Mapping[str, str] | None
    access_token: Any | None  # the MCP SDK's AccessToken when its bearer auth is on
    session_id: str | None
    raw: Any  # the MCP library's own request context object


class Observer:
    """Turns MCP requests into span records. Integrations call `start` / `ok` / `error`."""

    def __init__(
        self,
        recorder: Recorder,
        *,
        capture_arguments: bool,
        redact: Callable[[Any], Any] | None,
        identify: Callable[[RequestInfo], Any] | None,
        skip_methods: Iterable[str],
        capture_max_bytes: int,
        debug: bool,
    ) -> None:
        self.recorder = recorder
        self.capture_arguments = capture_arguments
        self.redact = redact
        self.identify = identify
        self.skip_methods = frozenset(skip_methods)
        self.capture_max_bytes = capture_max_bytes
        self.debug = debug
        self.closed = False
        self.hook_errors = 0
        # the session attributes of the last request, reused while they do not change:
        # (protocol_version, transport, session_id, client_info, attributes); one tuple, replaced whole
        self._shared: tuple[Any, ...] = (None, None, None, None, None)

    def log(self, msg: str) -> None:
        if self.debug:
            try:
                print(f"[mcp-obs] {msg}", file=sys.stderr, flush=True)
            except Exception:
                pass

    @property
    def capturing(self) -> bool:
        return self.capture_arguments or self.recorder.remote_capture

    # ---------------------------------------------------------------- request path
    def start(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        request_id: Any,
        *,
        meta: Any = None,
        protocol_version: str | None = None,
        transport: str | None = None,
        session_id: str | None = None,
        client_info: Any = None,
        access_token: Any = None,
        headers: Mapping[str, str] | None = None,
        raw: Any = None,
    ) -> tuple[SpanRecord, Any] | None:
        """Open a span record and make it the current OTel context. Returns (record, ctx token)."""
        rec = self.begin(
            method,
            params,
            request_id,
            meta=meta,
            protocol_version=protocol_version,
            transport=transport,
            session_id=session_id,
            client_info=client_info,
            access_token=access_token,
            headers=headers,
            raw=raw,
        )
        if rec is None:
            return None
        return rec, self.activate(rec)

    def activate(self, rec: SpanRecord) -> Any:
        """Make `rec` the current MCP span (and OTel parent) in this task; undo with `deactivate`."""
        # = attach(set_span_in_context(NonRecordingSpan(SpanContext(...)))), with the span
        # context built lazily and the context dict built once
        rt = _RUNTIME_CONTEXT
        if rt is None or _SPAN_KEY is None:
            token = otel_context.attach(otel_trace.set_span_in_context(_McpSpan(rec)))
            return token, current_record.set(rec)
        cur = rt.get_current()
        ctx = OtelContext({**cur, _SPAN_KEY: _McpSpan(rec)}) if cur else OtelContext({_SPAN_KEY: _McpSpan(rec)})
        return rt.attach(ctx), current_record.set(rec)

    @staticmethod
    def deactivate(tokens: Any) -> None:
        _detach(tokens)

    def begin(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        request_id: Any,
        *,
        meta: Any = None,
        protocol_version: str | None = None,
        transport: str | None = None,
        session_id: str | None = None,
        client_info: Any = None,
        access_token: Any = None,
        headers: Mapping[str, str] | None = None,
        raw: Any = None,
    ) -> SpanRecord | None:
        """Open a span record without touching the current context (for integrations that start
        the span in one task and run the handler in another)."""
        if self.closed or not self.recorder.enabled or method in self.skip_methods:
            return None
        target = None
        attrs: dict[str, Any] = {"mcp.method.name": method}
        if params:
            if method == "tools/call":
                target = params.get("name")
                attrs["gen_ai.operation.name"] = "execute_tool"
                if isinstance(target, str):
                    attrs["gen_ai.tool.name"] = target
            elif method == "prompts/get":
                target = params.get("name")
                if isinstance(target, str):
                    attrs["gen_ai.prompt.name"] = target
            elif method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
                uri = params.get("uri")
                if isinstance(uri, str):
                    attrs["mcp.resource.uri"] = uri  # not in the span name: URIs are high-cardinality
            if meta is None:
                meta = params.get("_meta")
        if request_id is not None:
            attrs["jsonrpc.request.id"] = str(request_id)
        sh = self._shared
        if (
            sh[4] is not None
            and sh[3] is client_info
            and sh[0] == protocol_version
            and sh[1] == transport
            and sh[2] == session_id
        ):
            attrs.update(sh[4])
        else:
            shared = _session_attributes(protocol_version, transport, session_id, client_info)
            self._shared = (protocol_version, transport, session_id, client_info, shared)
            attrs.update(shared)
        if access_token is not None:
            subject = getattr(access_token, "subject", None)
            client_id = getattr(access_token, "client_id", None)
            user = subject or client_id
            if user:
                attrs["enduser.id"] = str(user)
            if client_id:
                attrs["mcp.auth.client_id"] = str(client_id)
            scopes = getattr(access_token, "scopes", None)
            if scopes:
                attrs["enduser.scope"] = " ".join(str(s) for s in scopes)
        if self.identify is not None:
            try:
                who = self.identify(RequestInfo(method, params, headers, access_token, session_id, raw))
                if isinstance(who, str) and who:
                    attrs["enduser.id"] = who
                elif isinstance(who, Mapping):
                    if who.get("id"):
                        attrs["enduser.id"] = str(who["id"])
                    if who.get("scopes"):
                        attrs["enduser.scope"] = " ".join(str(s) for s in who["scopes"])
                    for k, v in who.items():
                        if k not in ("id", "scopes") and isinstance(v, (str, int, float, bool)):
                            attrs[f"enduser.{k}"] = v
            except Exception as e:
                self.hook_errors += 1
                self.log(f"identify() raised {e!r}")
        if self.capturing and params:
            args = params.get("arguments")
            if args is not None:
                s = capture_value(args, self.redact, self.capture_max_bytes)
                if s is not None:
                    attrs["gen_ai.tool.call.arguments" if method == "tools/call" else "mcp.request.arguments"] = s
        return SpanRecord(f"{method} {target}" if isinstance(target, str) else method, attrs, parse_traceparent(meta))

    def ok(self, started: tuple[SpanRecord, Any], result: Any, *, protocol_version: str | None = None) -> None:
        rec, token = started
        _detach(token)
        try:
            if protocol_version:
                rec.attributes["mcp.protocol.version"] = protocol_version
            is_error = None
            if result.__class__ is dict:  # mcp 2.x answers plain dicts: no attribute lookups
                is_error = result.get("isError")
            elif result is not None:
                is_error = getattr(result, "isError", None)
                if is_error is None:
                    is_error = getattr(result, "is_error", None)
                if is_error is None and isinstance(result, Mapping):
                    is_error = result.get("isError")
            if is_error is True:
                rec.attributes["error.type"] = "tool_error"
                rec.status_error = True
                rec.status_message = _first_text(result)
            if self.capturing and result is not None and rec.attributes.get("mcp.method.name") == "tools/call":
                s = capture_value(result, self.redact, self.capture_max_bytes)
                if s is not None:
                    rec.attributes["gen_ai.tool.call.result"] = s
        except Exception as e:
            self.hook_errors += 1
            self.log(f"hook error: {e!r}")
        self.recorder.finish(rec)

    def jsonrpc_error(
        self, started: tuple[SpanRecord, Any], code: Any, message: str | None, *, error_type: str | None = None
    ) -> None:
        rec, token = started
        _detach(token)
        rec.attributes["error.type"] = error_type or str(code)
        rec.attributes["rpc.response.status_code"] = str(code)
        rec.status_error = True
        rec.status_message = (message or "")[:1024]
        self.recorder.finish(rec)

    def exception(
        self, started: tuple[SpanRecord, Any], exc: BaseException, *, status_code: Any = None
    ) -> None:
        """A handler exception; `status_code` is the JSON-RPC code the library answers it with,
        when the integration knows it."""
        rec, token = started
        _detach(token)
        try:
            if status_code is not None:
                rec.attributes["rpc.response.status_code"] = str(status_code)
            rec.attributes["error.type"] = type(exc).__qualname__
            rec.status_error = True
            rec.status_message = str(exc)[:1024]
            rec.record_exception(exc)
        except Exception:
            self.hook_errors += 1
        self.recorder.finish(rec)

    def cancelled(self, started: tuple[SpanRecord, Any]) -> None:
        rec, token = started
        _detach(token)
        rec.attributes["error.type"] = "cancelled"
        rec.status_error = True
        rec.status_message = "request cancelled"
        self.recorder.finish(rec)


def _session_attributes(
    protocol_version: str | None, transport: str | None, session_id: str | None, client_info: Any
) -> dict[str, Any]:
    """The attributes every span of a session carries, in the order `begin` sets them."""
    attrs: dict[str, Any] = {}
    if protocol_version:
        attrs["mcp.protocol.version"] = protocol_version
    if transport:
        attrs["network.transport"] = transport
    if session_id:
        attrs["mcp.session.id"] = session_id
    if client_info is not None:
        name = getattr(client_info, "name", None)
        version = getattr(client_info, "version", None)
        if name is None and isinstance(client_info, Mapping):
            name, version = client_info.get("name"), client_info.get("version")
        if name:
            attrs["mcp.client.name"] = str(name)
        if version:
            attrs["mcp.client.version"] = str(version)
    return attrs


def _detach(tokens: Any) -> None:
    if tokens is None:
        return
    otel_token, cv_token = tokens
    try:
        current_record.reset(cv_token)
    except Exception:
        pass
    try:
        otel_context._RUNTIME_CONTEXT.detach(otel_token)  # silent variant of otel_context.detach
    except Exception:
        pass


def record_exception_on_current(exc: BaseException) -> None:
    """Attach an exception event to the current MCP span (for exceptions the MCP library swallows)."""
    try:
        rec = current_record.get()
        if rec is not None:
            rec.record_exception(exc)
    except Exception:
        pass


def _first_text(result: Any) -> str:
    try:
        content = getattr(result, "content", None)
        if content is None and isinstance(result, Mapping):
            content = result.get("content")
        for c in content or ():
            text = getattr(c, "text", None)
            if text is None and isinstance(c, Mapping):
                text = c.get("text")
            if isinstance(text, str):
                return text[:256]
    except Exception:
        pass
    return ""


class TelemetryHandle:
    """Returned by `configure_mcp_telemetry`: `flush()`, `shutdown()`, `stats()`."""

    def __init__(self, observer: Observer, exporter: Exporter, integration: str) -> None:
        self._observer = observer
        self._exporter = exporter
        self.integration = integration
        self._closed = False
        self._lock = threading.Lock()

    def flush(self, timeout: float = 5.0) -> bool:
        """Send every queued span now. Returns True when the queue was fully exported."""
        try:
            return self._exporter.flush(timeout)
        except Exception:
            return False

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush (bounded by `timeout`), then stop recording and stop the background threads."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        try:
            ok = self._exporter.shutdown(timeout)
        except Exception:
            ok = False
        self._observer.closed = True
        return ok

    def stats(self) -> dict[str, Any]:
        rec, exp = self._observer.recorder, self._exporter
        return {
            "integration": self.integration,
            "spans_recorded": rec.recorded,
            "spans_exported": exp.exported,
            "spans_sampled_out": rec.sampled_out,
            "spans_dropped": rec.dropped_queue_full + exp.dropped_export,
            "spans_dropped_queue_full": rec.dropped_queue_full,
            "spans_dropped_export": exp.dropped_export,
            "queue_size": len(rec.queue),
            "export_requests": exp.export_requests,
            "failed_exports": exp.failed_exports,
            "export_retries": exp.retries,
            "circuit_state": exp.breaker.state,
            "circuit_opens": exp.breaker.opens,
            "sampling_rate": rec.sampling,
            "telemetry_enabled": rec.enabled,
            "remote_config": exp.remote_config,
            "hook_errors": self._observer.hook_errors,
        }


_live_handles: "weakref.WeakSet[TelemetryHandle]" = weakref.WeakSet()


def _atexit() -> None:
    for h in list(_live_handles):
        try:
            h.shutdown(timeout=_env_float("MCPOBS_EXIT_FLUSH_TIMEOUT_S", 3.0))
        except Exception:
            pass


atexit.register(_atexit)


def _install_sigterm_flush() -> None:
    """Flush on SIGTERM too, without changing what SIGTERM does.

    Only when SIGTERM has the default disposition (nobody else handles it) and we are on the main
    thread: flush (bounded), restore the default and re-raise, so the process still dies of
    SIGTERM exactly as before. Servers like uvicorn install their own handler while running and
    re-raise the signal to the previous (this) handler after a graceful shutdown, which would
    otherwise skip `atexit`. Disable with MCPOBS_SIGTERM_FLUSH=0.
    """
    import signal

    if os.environ.get("MCPOBS_SIGTERM_FLUSH", "1") == "0" or not hasattr(signal, "SIGTERM"):
        return
    try:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def _on_sigterm(signum: int, frame: Any) -> None:
            _atexit()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, _on_sigterm)
    except Exception:
        pass


def build(
    *,
    api_key: str | None,
    endpoint: str | None,
    service_name: str | None,
    service_version: str | None,
    sampling: float | None,
    capture_arguments: bool,
    redact: Callable[[Any], Any] | None,
    identify: Callable[[RequestInfo], Any] | None,
    skip_methods: Iterable[str],
    debug: bool,
    default_service_name: str,
) -> tuple[Observer, Exporter]:
    api_key = api_key or os.environ.get("MCPOBS_API_KEY") or None
    endpoint = endpoint or os.environ.get("MCPOBS_ENDPOINT") or "http://127.0.0.1:4318"
    if sampling is None and os.environ.get("MCPOBS_SAMPLING"):
        sampling = _env_float("MCPOBS_SAMPLING", 1.0)
    if sampling is not None:
        sampling = min(1.0, max(0.0, float(sampling)))
    recorder = Recorder(
        queue_max=int(_env_float("MCPOBS_QUEUE_MAX", 2048)),
        batch_size=int(_env_float("MCPOBS_BATCH_SIZE", 256)),
        slow_threshold_ms=_env_float("MCPOBS_SLOW_THRESHOLD_MS", 1000.0),
        sampling=sampling,
    )
    observer = Observer(
        recorder,
        capture_arguments=bool(capture_arguments),
        redact=redact,
        identify=identify,
        skip_methods=skip_methods or (),
        capture_max_bytes=int(_env_float("MCPOBS_CAPTURE_MAX_BYTES", 4096)),
        debug=debug,
    )
    attrs: dict[str, Any] = {
        "service.name": service_name or os.environ.get("OTEL_SERVICE_NAME") or default_service_name,
        "telemetry.sdk.name": SDK_NAME,
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
    }
    if service_version:
        attrs["service.version"] = service_version
    resource = Resource.create(attrs)
    refresh = os.environ.get("MCPOBS_CONFIG_REFRESH_S")
    exporter = Exporter(
        recorder,
        endpoint=endpoint,
        api_key=api_key,
        resource=resource,
        scope=InstrumentationScope("mcp_obs_server", __version__),
        export_interval_s=_env_float("MCPOBS_EXPORT_INTERVAL_MS", 1000.0) / 1000.0,
        timeout_s=_env_float("MCPOBS_EXPORT_TIMEOUT_MS", 5000.0) / 1000.0,
        max_retries=int(_env_float("MCPOBS_MAX_RETRIES", 3)),
        breaker=CircuitBreaker(
            threshold=int(_env_float("MCPOBS_BREAKER_THRESHOLD", 3)),
            base_s=_env_float("MCPOBS_BREAKER_BASE_MS", 1000.0) / 1000.0,
            max_s=_env_float("MCPOBS_BREAKER_MAX_MS", 60000.0) / 1000.0,
        ),
        config_refresh_s=float(refresh) if refresh else None,
        debug=debug,
        user_agent=f"{SDK_NAME}/{__version__}",
    )
    if not api_key:
        observer.log("no API key (api_key= or MCPOBS_API_KEY): spans are recorded but not sent")
    return observer, exporter
