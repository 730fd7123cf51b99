#!/usr/bin/env bash
# Instructions per call or message, counted by valgrind's callgrind
# (`make bench-instr`; BENCHMARKS.md 1.19 and section 3). On these shared
# VMs a CPU-time ratio moves by 10–15 % from run to run on its own
# (BENCHMARKS.md 1.18); an instruction count moves by 1–3 % (serve) or
# 5–10 % (pubsub, where pulls and acks batch differently). It counts user
# space only: system calls' kernel time, which frame batching saves, and
# cache misses, which the chain's footprint costs, are not in it. It
# complements `make bench` and `make bench-pubsub`, it does not replace them.
#
#   scripts/bench-instr.sh serve    benchserver variants at 50 calls in flight:
#                                   gRPC over h2c and Connect JSON over HTTP/1.1
#   scripts/bench-instr.sh pubsub   BenchmarkJetStream's bare loop and pubsub's
#                                   chains, 100 B messages, GOMAXPROCS=1
#
# Settings (environment): VARIANTS (serve: benchserver variants, default
# "connect,kit-nochain,kit,grpc-go"; pubsub: BenchmarkJetStream names, default
# "bare,bare-headers,nochain,chain-nosuccesslog,chain"), N (calls or messages
# counted, default 20000 for serve, 10000 for pubsub). Far fewer drift: with
# N=2000, kit came out at 1.02× connect on gRPC, where 20000 gives 1.09–1.12×.
# LOADS (serve: "grpc json" by default, or one of them, or "rest": the
# JSON body POSTed to Ping's REST route, /v1/ping, on kit's variants, or
# "stream": a gRPC server stream of one message, CountUp, h2c, not on
# grpc-go). KEEP: a directory
# that keeps the callgrind files, to see where the instructions go, e.g.
#   callgrind_annotate --inclusive=no --auto=no KEEP/kit-json.cg.1
# CACHE=1 (serve) also simulates one core's caches (32 KiB I1 and D1, a
# 1 MiB L2 as the last level, 64-byte lines, 8-way: these machines' L1 and
# L2) and adds each variant's misses per call: I1mr, D1mr, D1mw, ILmr, DLmr,
# DLmw (BENCHMARKS.md 1.35). valgrind runs every thread on one simulated
# cache, as a server pinned to one core shares its caches. To see which
# functions miss:
#   callgrind_annotate --inclusive=no --auto=no --show=Ir,I1mr,D1mr,D1mw \
#     --sort=I1mr KEEP/kit-json.cg.1
#
# Go's asynchronous preemption signals trip an assertion in callgrind, so the
# programs run with GODEBUG=asyncpreemptoff=1. Only work done under load is
# counted: serve zeroes the counters after a warm-up, and pubsub runs each
# benchmark at N and 2N messages and takes the difference, so start-up cancels.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
# shellcheck source=scripts/benchlib.sh
source scripts/benchlib.sh

mode=${1:-}
if [[ $mode != serve && $mode != pubsub ]]; then
	echo "usage: scripts/bench-instr.sh serve|pubsub" >&2
	exit 2
fi
need=()
command -v valgrind >/dev/null || need+=(valgrind)
[[ $mode != serve ]] || command -v h2load >/dev/null || need+=(nghttp2-client)
aptInstall "${need[@]}"
work=${KEEP:-$(mktemp -d)}
mkdir -p "$work"
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
export GODEBUG=asyncpreemptoff=1

# summary prints the instruction count a callgrind output file totals, and
# if a second argument is given, the cache misses after it.
summary() { awk -v cache="${2:-}" '/^summary:/ {print (cache ? $2 " " $5 " " $6 " " $7 " " $8 " " $9 " " $10 : $2); exit}' "$1"; }

cachesim=()
[[ -z ${CACHE:-} ]] || cachesim=(--cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=1048576,8,64)

# serveOne prints the instructions per call of VARIANT under LOAD (grpc or json).
serveOne() {
	local variant=$1 load=$2 n=$3 out="$work/$1-$2"
	valgrind --tool=callgrind "${cachesim[@]}" --callgrind-out-file="$out.cg" \
		bin/benchserver -variant "$variant" -log "$out.log" >"$out.stdout" 2>"$out.stderr" &
	server=$! # global: the subshell that $(serveOne ...) runs in kills it on exit
	trap 'kill "$server" 2>/dev/null || true' EXIT
	local addr
	addr=$(listenAddr "$server" "$out")
	local url="http://$addr/connectkit.ping.v1.PingService/Ping" args
	case $load in
	grpc) args=(-c 10 -m 5 -d "$work/ping.grpc" -H 'content-type: application/grpc' -H 'te: trailers') ;;
	json) args=(--h1 -c 50 -d "$work/ping.json" -H 'content-type: application/json') ;;
	stream) # a gRPC server stream of one message: CountUp{number: 1} (not grpc-go)
		url="http://$addr/connectkit.ping.v1.PingService/CountUp"
		args=(-c 10 -m 5 -d "$work/countup.grpc" -H 'content-type: application/grpc' -H 'te: trailers')
		;;
	rest) # the same body to Ping's REST route (kit's variants only)
		url="http://$addr/v1/ping"
		args=(--h1 -c 50 -d "$work/ping.json" -H 'content-type: application/json')
		;;
	esac
	# kit-auth lets in the calls with its static token (benchserver).
	[[ $variant != kit-auth ]] || args+=(-H 'authorization: Bearer bench')
	h2load "${args[@]}" -n 2000 "$url" >"$out.warm"
	callgrind_control -z "$server" >/dev/null 2>&1
	h2load "${args[@]}" -n "$n" "$url" >"$out.load"
	callgrind_control -d "$server" >/dev/null 2>&1
	kill -INT "$server"
	wait "$server" || true
	grep -q " $n succeeded" "$out.load" || { cat "$out.load" >&2; return 1; }
	summary "$out.cg.1" "${CACHE:-}" | awk -v n="$n" '{for (i = 1; i <= NF; i++) printf "%s%.1f", (i > 1 ? " " : ""), $i / n; print ""}'
}

# table prints one Markdown row per variant, with its ratio to the first,
# and with CACHE=1 the misses per call.
table() {
	awk '!first {first = $2} {printf "| %s | %d | %.2f |", $1, $2, $2 / first; for (i = 3; i <= NF; i++) printf " %s |", $i; print ""}'
}

case $mode in
serve)
	n=${N:-20000} variants=${VARIANTS:-connect,kit-nochain,kit,grpc-go}
	mkdir -p bin
	go build -o bin/benchserver ./internal/bench/benchserver
	printf '\x00\x00\x00\x00\x02\x08\x2a' >"$work/ping.grpc" # PingRequest{number: 42}, one gRPC frame
	printf '{"number":42}' >"$work/ping.json"
	printf '\x00\x00\x00\x00\x02\x08\x01' >"$work/countup.grpc" # CountUpRequest{number: 1}
	for load in ${LOADS:-grpc json}; do
		if [[ -n ${CACHE:-} ]]; then
			echo "| $load, 50 in flight | instructions per call | × ${variants%%,*} | I1mr | D1mr | D1mw | ILmr | DLmr | DLmw |"
			echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
		else
			echo "| $load, 50 in flight | instructions per call | × ${variants%%,*} |"
			echo "|---|--:|--:|"
		fi
		rows=""
		for v in ${variants//,/ }; do
			[[ ($load == json || $load == stream) && $v == grpc-go ]] && continue
			[[ $load == rest && $v != kit* ]] && continue
			count=$(serveOne "$v" "$load" "$n")
			rows+="$v $count"$'\n'
		done
		table <<<"${rows%$'\n'}"
		echo
	done
	;;
pubsub)
	n=${N:-10000} variants=${VARIANTS:-bare,bare-headers,nochain,chain-nosuccesslog,chain} rows=""
	go test -c -o "$work/natsjs.test" ./pubsub/natsjs
	echo "| 100 B, GOMAXPROCS=1 | instructions per message | × ${variants%%,*} |"
	echo "|---|--:|--:|"
	for v in ${variants//,/ }; do
		pattern="BenchmarkJetStream/^$v\$/throughput/100B"
		[[ $v == bare* ]] || pattern="BenchmarkJetStream/^pubsub\$/throughput/100B/^$v\$"
		counts=()
		for count in "$n" $((2 * n)); do
			GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$work/$v-$count.cg" \
				"$work/natsjs.test" -test.run '^$' -test.bench "$pattern" -test.benchtime "${count}x" \
				>"$work/$v-$count.out" 2>"$work/$v-$count.err" || { cat "$work/$v-$count.out" >&2; exit 1; }
			grep -q "^Benchmark" "$work/$v-$count.out" || { echo "no benchmark matched $pattern" >&2; exit 1; }
			counts+=("$(summary "$work/$v-$count.cg")")
		done
		rows+="$v $(((counts[1] - counts[0]) / n))"$'\n'
	done
	table <<<"${rows%$'\n'}"
	;;
esac
