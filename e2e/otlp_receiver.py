"""A minimal in-process OTLP/gRPC trace receiver for the end-to-end tests.

Implements `opentelemetry.proto.collector.trace.v1.TraceService/Export` (the OTLP/gRPC trace endpoint that
Envoy's `envoy.tracers.opentelemetry` and oidc-authz's OTLP exporter send to) with the generated classes of
PyPI `opentelemetry-proto` and a `grpcio` server, and keeps every received span in a thread-safe list:

    from otlp_receiver import OtlpReceiver
    with OtlpReceiver() as rx:                     # listens on 127.0.0.1:<free port>
        ... point exporters at rx.endpoint (http://127.0.0.1:PORT) ...
        spans = rx.wait_for(lambda s: s.service == "envoy", timeout=10)

Span ids are lower-case hex (trace_id 32 chars, span_id / parent_span_id 16 chars; parent "" for a root),
as in a W3C traceparent. Attribute values are flattened to Python values (arrays to lists, kvlists to dicts,
bytes to bytes). Run it standalone to watch what an exporter sends:

    .venv/bin/python e2e/otlp_receiver.py --port 4317
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


def any_value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attributes(kvs) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    service: str  # the resource attribute service.name ("" when absent)
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    attributes: dict[str, Any] = field(hash=False)
    resource: dict[str, Any] = field(hash=False)
    scope: str = ""  # instrumentation scope name
    status_code: int = 0
    events: tuple[tuple[str, dict[str, Any]], ...] = field(default=(), hash=False)

    def all_strings(self) -> list[str]:
        """Every string (and bytes, decoded) anywhere in this span: name, attribute values, resource,
        events: for "no secret anywhere" assertions."""
        out: list[str] = [self.name, self.scope]

        def walk(x: Any) -> None:
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, bytes):
                out.append(x.decode("utf-8", "replace"))
            elif isinstance(x, dict):
                for k, v in x.items():
                    out.append(str(k))
                    walk(v)
            elif isinstance(x, (list, tuple)):
                for v in x:
                    walk(v)
            elif x is not None:
                out.append(str(x))

        walk(self.attributes)
        walk(self.resource)
        for name, attrs in self.events:
            out.append(name)
            walk(attrs)
        return out


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver):
        self._rx = receiver

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        spans: list[Span] = []
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            service = resource.get("service.name", "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(Span(
                        trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(), name=s.name, service=service,
                        kind=s.kind, attributes=attributes(s.attributes), resource=resource,
                        scope=ss.scope.name, status_code=s.status.code,
                        events=tuple((e.name, attributes(e.attributes)) for e in s.events),
                    ))
        self._rx._add(spans, dict(context.invocation_metadata()))
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """OTLP/gRPC trace receiver on host:port (port 0 = a free one). start()/stop() or a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Condition()
        self._spans: list[Span] = []
        self.exports = 0  # Export calls received
        self.metadata: list[dict[str, str]] = []  # gRPC metadata of each Export call
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        self.host = host
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {host}:{port}")

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _add(self, spans: list[Span], metadata: dict[str, str]) -> None:
        with self._lock:
            self._spans.extend(spans)
            self.exports += 1
            self.metadata.append(metadata)
            self._lock.notify_all()

    def spans(self, pred: Callable[[Span], bool] | None = None) -> list[Span]:
        """A snapshot of the spans received so far (those matching pred, if given), in arrival order."""
        with self._lock:
            return [s for s in self._spans if pred is None or pred(s)]

    def trace(self, trace_id: str) -> list[Span]:
        return self.spans(lambda s: s.trace_id == trace_id)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def wait_for(self, pred: Callable[[Span], bool], count: int = 1, timeout: float = 10.0) -> list[Span]:
        """Block until at least `count` received spans match pred; returns them. TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [s for s in self._spans if pred(s)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)}/{count} matching spans after {timeout}s; "
                                       f"received: {[(s.service, s.name, s.trace_id) for s in self._spans]}")
                self._lock.wait(left)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4317)
    args = ap.parse_args()
    rx = OtlpReceiver(args.host, args.port).start()
    print(f"READY {rx.endpoint}", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.2)
            spans = rx.spans()
            for s in spans[seen:]:
                print(f"{s.service} {s.name} trace={s.trace_id} span={s.span_id} parent={s.parent_span_id or '-'} "
                      f"{s.attributes}", flush=True)
            seen = len(spans)
    except KeyboardInterrupt:
        rx.stop()


if __name__ == "__main__":
    main()
