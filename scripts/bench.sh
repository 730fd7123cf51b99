#!/usr/bin/env bash
# Benchmark suite: builds internal/bench/benchserver and benchrun, installs
# the load generators if missing (h2load from nghttp2-client, wrk, perf for
# syscall counts), and runs every variant in the same run, pinned and
# unpinned. Extra arguments go to benchrun (see `bin/benchrun -h`), e.g.
#   scripts/bench.sh -rounds 3 -variants connect,connect-batch
# The Markdown table goes to stdout, progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v wrk >/dev/null || need+=(wrk)
command -v taskset >/dev/null || need+=(util-linux)
command -v perf >/dev/null || need+=(linux-perf)
if ((${#need[@]})); then
	sudo=()
	((EUID == 0)) || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
if (($(nproc) < 2)); then
	echo "bench.sh: pinning needs 2 CPUs; running unpinned only" >&2
	set -- -pin unpinned "$@"
fi

mkdir -p bin
go build -o bin/benchserver ./internal/bench/benchserver
go build -o bin/benchrun ./internal/bench/benchrun

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(go version | cut -d' ' -f3) $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
exec bin/benchrun "$@"
