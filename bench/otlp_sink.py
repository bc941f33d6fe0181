#!/usr/bin/env python3
"""A counting OTLP/gRPC trace receiver for bench/run.sh's telemetry part.

Implements `opentelemetry.proto.collector.trace.v1.TraceService/Export` with PyPI `opentelemetry-proto` and
`grpcio` (as e2e/otlp_receiver.py does) but keeps nothing: every Export is decoded, its spans counted (all, and
those named `oidc_authz.check`) and answered with an empty ExportTraceServiceResponse, i.e. success. The counts are
served as one line of text over HTTP, so the bench can read them between measurements:

    otlp_sink.py --port 4317 --stats-port 4318
    curl -s http://127.0.0.1:4318/   ->   exports=12 spans=6144 check_spans=6144 bytes=1234567

The e2e receiver keeps every span as a Python object, which at tens of thousands of spans per second costs more
CPU and memory than the server under test; this one only decodes and counts.
"""

from __future__ import annotations

import argparse
import http.server
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.exports = 0
        self.spans = 0
        self.check_spans = 0
        self.bytes = 0

    def line(self) -> str:
        with self.lock:
            return f"exports={self.exports} spans={self.spans} check_spans={self.check_spans} bytes={self.bytes}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4317)
    ap.add_argument("--stats-port", type=int, default=4318)
    a = ap.parse_args()
    counts = Counts()

    def export(raw: bytes, context) -> bytes:
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
        spans = checks = 0
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                spans += len(ss.spans)
                checks += sum(1 for s in ss.spans if s.name == "oidc_authz.check")
        with counts.lock:
            counts.exports += 1
            counts.spans += spans
            counts.check_spans += checks
            counts.bytes += len(raw)
        return trace_service_pb2.ExportTraceServiceResponse().SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)},  # raw bytes in and out
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(f"{a.host}:{a.port}") == 0:
        raise SystemExit(f"otlp_sink: cannot listen on {a.host}:{a.port}")
    server.start()

    class Stats(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = counts.line().encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # quiet
            pass

    stats = http.server.ThreadingHTTPServer((a.host, a.stats_port), Stats)
    print(f"READY http://{a.host}:{a.port} stats http://{a.host}:{a.stats_port}/", flush=True)
    try:
        stats.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(grace=None)


if __name__ == "__main__":
    main()
