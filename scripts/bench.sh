#!/usr/bin/env bash
# Benchmark suite (`make bench`; BENCHMARKS.md): builds
# internal/bench/benchserver and benchrun, installs the load generators if
# missing (h2load from nghttp2-client, wrk, perf for syscall counts), and
# runs every variant (kit, kit-otel, kit-nochain, kit-nobatch, connect,
# grpc-go by default) in the same run: gRPC over h2c and Connect JSON over
# HTTP/1.1, 50 and 1 calls in flight, pinned and unpinned. Extra arguments
# go to benchrun (see `bin/benchrun -h`), e.g.
#   scripts/bench.sh -rounds 5 -out bin/bench.md
#   scripts/bench.sh -variants kit,connect -scenarios grpc-h2c:50 -pin pinned
# The Markdown tables go to stdout (and to -out), progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/benchlib.sh
source scripts/benchlib.sh

needCommands h2load:nghttp2-client wrk:wrk taskset:util-linux perf:linux-perf
if (($(nproc) < 2)); then
	echo "bench.sh: pinning needs 2 CPUs; running unpinned only" >&2
	set -- -pin unpinned "$@"
fi

mkdir -p bin
go build -o bin/benchserver ./internal/bench/benchserver
go build -o bin/benchrun ./internal/bench/benchrun
exec bin/benchrun "$@"
