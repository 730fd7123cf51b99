#!/usr/bin/env bash
# Bytes and objects a served call allocates in the server, by function
# (BENCHMARKS.md section 35): benchserver with -memprofile (every allocation
# sampled) under h2load, 2 000 calls of warm-up, then N1 calls in one run
# and N2 in another; the difference of the two profiles divided by
# N2 - N1 is a call's (start-up and warm-up cancel). Counts, which hold on
# a shared machine. For each variant and load it prints a call's bytes and
# objects, and it keeps, in OUT, the profiles and a call's allocations by
# allocating function (runtime frames hidden, so that a map's or a
# string's allocation counts to its caller):
#
#   OUT/VARIANT-LOAD.alloc_space.txt and .alloc_objects.txt  (per call)
#
#   scripts/bench-alloc.sh                                    connect, kit-nochain, kit
#   VARIANTS=kit BIN=/tmp/other/benchserver OUT=/tmp/a scripts/bench-alloc.sh
#   join <(sort OUT/connect-grpc.alloc_space.txt) <(sort OUT/kit-grpc.alloc_space.txt)
#
# Settings (environment): VARIANTS (default "connect,kit-nochain,kit"),
# LOADS ("grpc json": gRPC unary over h2c, 50 in flight on 10
# connections; Connect JSON over HTTP/1.1, 50 connections), N1 and N2
# (default 5000 and 15000), OUT (default a new temporary directory, kept),
# BIN (a benchserver binary to run instead of building bin/benchserver).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
# shellcheck source=scripts/benchlib.sh
source scripts/benchlib.sh

needCommands h2load:nghttp2-client
bin=$(benchserverBin)
n1=${N1:-5000} n2=${N2:-15000}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
printf '\x00\x00\x00\x00\x02\x08\x2a' >"$out/ping.grpc" # PingRequest{number: 42}, one gRPC frame
printf '{"number":42}' >"$out/ping.json"

# profileOne writes the allocation profile of VARIANT ($1) after N ($3)
# calls of LOAD ($2) to OUT/VARIANT-LOAD-N.pb.gz.
profileOne() {
	local v=$1 load=$2 n=$3 p="$out/$1-$2-$3"
	"$bin" -variant "$v" -log "$p.log" -memprofile "$p.pb.gz" >"$p.stdout" 2>"$p.stderr" &
	server=$! # global: the subshell that (profileOne ...) runs in kills it on exit
	trap 'kill "$server" 2>/dev/null || true' EXIT
	local addr
	addr=$(listenAddr "$server" "$p")
	local url="http://$addr/connectkit.ping.v1.PingService/Ping" args
	case $load in
	grpc) args=(-c 10 -m 5 -d "$out/ping.grpc" -H 'content-type: application/grpc' -H 'te: trailers') ;;
	json) args=(--h1 -c 50 -d "$out/ping.json" -H 'content-type: application/json') ;;
	*) echo "bench-alloc.sh: unknown load $load" >&2; return 1 ;;
	esac
	h2load "${args[@]}" -n 2000 "$url" >"$p.warm"
	h2load "${args[@]}" -n "$n" "$url" >"$p.load"
	kill -INT "$server"
	wait "$server" || true
	grep -q " $n succeeded" "$p.load" || { cat "$p.load" >&2; return 1; }
}

# perCall prints a call's INDEX ($3: alloc_space or alloc_objects) of
# VARIANT ($1) under LOAD ($2) by allocating function, "FUNCTION VALUE".
perCall() {
	go tool pprof -sample_index="$3" -unit=B -hide='^runtime\.' -top -nodecount=100000 \
		-diff_base "$out/$1-$2-$n1.pb.gz" "$bin" "$out/$1-$2-$n2.pb.gz" 2>/dev/null |
		awk -v d=$((n2 - n1)) 'rows { v = $1; sub(/B$/, "", v); if (v != 0) printf "%s %.2f\n", $6, v / d } /flat%/ { rows = 1 }'
}

echo "| load | variant | bytes a call | objects a call |"
echo "|---|---|--:|--:|"
variants=${VARIANTS:-connect,kit-nochain,kit}
for load in ${LOADS:-grpc json}; do
	for v in ${variants//,/ }; do
		(profileOne "$v" "$load" "$n1")
		(profileOne "$v" "$load" "$n2")
		for index in alloc_space alloc_objects; do
			perCall "$v" "$load" "$index" >"$out/$v-$load.$index.txt"
		done
		sum() { awk '{ s += $2 } END { printf "%.1f", s }' "$out/$v-$load.$1.txt"; }
		echo "| $load | $v | $(sum alloc_space) | $(sum alloc_objects) |"
	done
done
echo "profiles and per-function files in $out" >&2
