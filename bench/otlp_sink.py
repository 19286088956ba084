"""An OTLP/gRPC trace receiver that accepts every export and keeps nothing but a count: the
far end of `bench/tracing.sh`, so that exporting costs the server what it costs in production
(encoding and sending batches) without a collector on the machine.
Usage: python3 bench/otlp_sink.py PORT   (prints the number of export calls when stopped)"""

import signal
import sys
from concurrent import futures

import grpc

METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
calls = {"n": 0, "bytes": 0}


def export(request, context):
    calls["n"] += 1
    calls["bytes"] += len(request)
    return b""  # an empty ExportTraceServiceResponse


def main():
    port = int(sys.argv[1])
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()

    def stop(*_):
        print(f"otlp sink: {calls['n']} exports, {calls['bytes']} bytes", flush=True)
        server.stop(0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
