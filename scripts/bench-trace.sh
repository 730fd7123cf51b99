#!/usr/bin/env bash
# Where one call's time goes at one call in flight, from a runtime
# execution trace (BENCHMARKS.md 1.43): benchserver pinned to CPU 0
# (GOMAXPROCS=1) with -trace, the load generator on CPU 1 making one call
# at a time (gRPC over h2c: h2load -c1 -m1; Connect JSON over HTTP/1.1:
# wrk -c1), then internal/bench/tracecall prints, per call (medians after
# the first SKIP calls): the time from the request's arrival to the start
# of the response's last write(2) (the server's path), the time each kind
# of goroutine ran on that path, the time inside system calls, the time
# inside the first and the last write(2) of the response, and what is left
# until the next request arrives (the client's turn). The tracer makes
# every goroutine switch dearer: compare variants within a run.
#
#   scripts/bench-trace.sh                        connect, kit-nochain and kit, gRPC
#   LOAD=json ROUNDS=3 scripts/bench-trace.sh
#   VARIANTS=kit BIN=/tmp/old/benchserver scripts/bench-trace.sh
#   PIN=unpinned LOAD=json scripts/bench-trace.sh  what the runtime does a call on two cores
#
# With PIN=unpinned the server and the load run on any CPU (GOMAXPROCS
# 2), where calls merge and cannot be timed one by one: it prints instead
# what tracecall -events counts a response (goroutines created, unblocked
# and by whom, blocked, yields, system calls, Ps started, goroutines resumed
# on another P, the time each kind of goroutine ran), those at least EVENTS a response (default 0.05; EVENTS
# set with PIN=pinned prints those counts too).
#
# Settings (environment): VARIANTS (default "connect,kit-nochain,kit"),
# LOAD ("grpc" or "json", default grpc), N (h2load calls, default 4000),
# WRK_DURATION (default 2s), SKIP (calls of warm-up left out, default 500),
# ROUNDS (default 1; the variants alternate within a round), BIN (a
# benchserver binary to run instead of building bin/benchserver).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
# shellcheck source=scripts/benchlib.sh
source scripts/benchlib.sh

needCommands h2load:nghttp2-client wrk:wrk taskset:util-linux
needTwoCPUs bench-trace.sh
mkdir -p bin
bin=$(benchserverBin)
go build -o bin/tracecall ./internal/bench/tracecall
load=${LOAD:-grpc}
unpinned=0 events=${EVENTS:-}
case ${PIN:-pinned} in
pinned) ;;
unpinned) unpinned=1 events=${events:-0.05} ;;
*) echo "bench-trace.sh: PIN $PIN is not pinned or unpinned" >&2; exit 1 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '\x00\x00\x00\x00\x02\x08\x2a' >"$work/ping.grpc" # PingRequest{number: 42}, gRPC-framed
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "'{\"number\":42}'" >"$work/ping.lua"

# traceOne prints the figures of one variant.
traceOne() {
	local v=$1 out="$work/$1" srvpin=(taskset -c 0) loadpin=(taskset -c 1) pin=pinned
	if [[ $unpinned == 1 ]]; then
		srvpin=() loadpin=() pin=unpinned
	fi
	"${srvpin[@]}" "$bin" -variant "$v" -log "$out.log" -trace "$out.trace" >"$out.stdout" 2>"$out.stderr" &
	server=$! # global: the subshell that (traceOne ...) runs in kills it on exit
	trap 'kill "$server" 2>/dev/null || true' EXIT
	local addr
	addr=$(listenAddr "$server" "$out")
	local url="http://$addr/connectkit.ping.v1.PingService/Ping"
	case $load in
	grpc) "${loadpin[@]}" h2load -t1 -n "${N:-4000}" -c1 -m1 -d "$work/ping.grpc" \
		-H 'content-type: application/grpc' -H 'te: trailers' "$url" >"$out.load" ;;
	json) "${loadpin[@]}" wrk -t1 -c1 -d "${WRK_DURATION:-2s}" --latency -s "$work/ping.lua" "$url" >"$out.load" ;;
	*) echo "bench-trace.sh: LOAD $load is not grpc or json" >&2; return 1 ;;
	esac
	kill -INT "$server"
	wait "$server" || true
	echo "== $v, $load, one call in flight, $pin"
	if [[ -n $events ]]; then
		bin/tracecall -events "$events" "$out.trace"
		awk '$1 == "50%" {print "load generator p50 " $2}' "$out.load"
	else
		bin/tracecall -skip "${SKIP:-500}" "$out.trace"
	fi
}

IFS=, read -ra variants <<<"${VARIANTS:-connect,kit-nochain,kit}"
for ((r = 1; r <= ${ROUNDS:-1}; r++)); do
	for v in "${variants[@]}"; do
		(traceOne "$v")
	done
done
