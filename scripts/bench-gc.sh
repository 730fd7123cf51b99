#!/usr/bin/env bash
# The collector's work per Connect JSON call over HTTP/1.1, counted by the
# runtime itself (BENCHMARKS.md 1.41): benchserver pinned to CPU 0
# (GOMAXPROCS=1) with GODEBUG=gctrace=1,gcpacertrace=1, h2load on CPU 1
# (`--h1 -c 50`, as scripts/bench-instr.sh serve), 5 000 calls of warm-up,
# then N counted. For each variant it prints, over the counted calls:
#
#   cycles          collections that ended
#   work B/call     bytes the mark phase scanned (heap + stacks + globals,
#                   the pacer's "B work") per call: a count, which holds on
#                   a shared machine
#   heap, stack, globals KB/cycle   that work per cycle, by root
#   live MB, goal MB                gctrace's heap marked and heap goal
#                                   (whole MB), averaged over the cycles
#   gc µs/call, cpu µs/call         the collector's CPU (gctrace's "ms cpu")
#                                   and the server's (/proc) per call: times,
#                                   meaningful only on a quiet machine
#
#   scripts/bench-gc.sh                       connect, kit-nochain and kit
#   VARIANTS=kit BIN=/tmp/old N=20000 scripts/bench-gc.sh
#
# Settings (environment): VARIANTS (benchserver variants, default
# "connect,kit-nochain,kit"), N (calls counted, default 50000), BIN (a
# benchserver binary to run instead of building bin/benchserver, e.g. one
# built in a worktree of another commit, for alternating runs).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
# shellcheck source=scripts/benchlib.sh
source scripts/benchlib.sh

needCommands h2load:nghttp2-client taskset:util-linux
needTwoCPUs bench-gc.sh
bin=$(benchserverBin)
n=${N:-50000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '{"number":42}' >"$work/ping.json"

# gcOne prints the figures of one variant.
gcOne() {
	local v=$1 out="$work/$1"
	GODEBUG=gctrace=1,gcpacertrace=1 taskset -c 0 "$bin" -variant "$v" -log "$out.log" >"$out.stdout" 2>"$out.stderr" &
	server=$! # global: the subshell that (gcOne ...) runs in kills it on exit
	trap 'kill "$server" 2>/dev/null || true' EXIT
	local addr
	addr=$(listenAddr "$server" "$out")
	local url="http://$addr/connectkit.ping.v1.PingService/Ping"
	local args=(--h1 -c 50 -d "$work/ping.json" -H 'content-type: application/json')
	taskset -c 1 h2load "${args[@]}" -n 5000 "$url" >"$out.warm"
	sleep 0.2 # the warm-up's last collection reports
	local l0 t0 l1 t1
	l0=$(wc -l <"$out.stderr")
	t0=$(awk '{print $14 + $15}' "/proc/$server/stat")
	taskset -c 1 h2load "${args[@]}" -n "$n" "$url" >"$out.load"
	t1=$(awk '{print $14 + $15}' "/proc/$server/stat")
	l1=$(wc -l <"$out.stderr")
	kill -INT "$server"
	wait "$server" || true
	grep -q " $n succeeded" "$out.load" || { cat "$out.load" >&2; return 1; }
	sed -n "$((l0 + 1)),${l1}p" "$out.stderr" | awk -v v="$v" -v n="$n" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
	/^gc / { # "... a+b/c/d+e ms cpu, X->Y->Z MB, G MB goal, ..."
		for (i = 1; i <= NF; i++) {
			if ($i == "cpu,") { split($(i - 2), p, "+"); split(p[2], q, "/"); ms += p[1] + q[1] + q[2] + q[3] + p[3] }
			if ($i == "MB,") { split($(i - 1), h, "->"); live += h[3] }
			if ($i == "goal,") goal += $(i - 2)
		}
		c++
	}
	/^pacer: .* B work/ { # "... for H+S+G B work (...)"
		for (i = 1; i <= NF; i++) if ($i == "work") { split($(i - 2), w, "+"); hw += w[1]; sw += w[2]; gw += w[3]; pc++ }
	}
	END {
		if (!c || !pc) { print v ": no collection in the counted calls" > "/dev/stderr"; exit 1 }
		printf "| %s | %d | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.1f |\n", v, c, (hw + sw + gw) / n,
			hw / pc / 1024, sw / pc / 1024, gw / pc / 1024, live / c, goal / c, ms * 1000 / n, ticks / hz * 1e6 / n
	}'
}

echo "| JSON, 50 in flight, 1 core | cycles | work B/call | heap KB/cycle | stack KB/cycle | globals KB/cycle | live MB | goal MB | gc µs/call | cpu µs/call |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
variants=${VARIANTS:-connect,kit-nochain,kit}
for v in ${variants//,/ }; do
	(gcOne "$v")
done
