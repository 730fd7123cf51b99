# shellcheck shell=bash
# Helpers that scripts/bench.sh, bench-instr.sh, bench-gc.sh, bench-alloc.sh
# and bench-trace.sh source.

# aptInstall installs the Debian packages named, if any: a missing load
# generator or profiler, as root or through sudo.
aptInstall() {
	(($#)) || return 0
	local sudo=()
	((EUID == 0)) || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

# needCommands installs, through aptInstall, the Debian package of each
# command that is missing; each argument is COMMAND:PACKAGE.
needCommands() {
	local need=() c
	for c in "$@"; do
		command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
	done
	aptInstall "${need[@]}"
}

# needTwoCPUs fails, naming the script $1, on a machine with fewer than 2
# CPUs: the server is pinned to CPU 0 and the load generator to CPU 1.
needTwoCPUs() {
	if (($(nproc) < 2)); then
		echo "$1: needs 2 CPUs (server on CPU 0, load on CPU 1)" >&2
		exit 1
	fi
}

# listenAddr waits for the benchserver whose PID is $1, writing to the files
# PREFIX.stdout and PREFIX.stderr ($2), to print "listening on ADDR", and
# prints ADDR; if the server exits first, it prints its stderr and fails.
listenAddr() {
	local pid=$1 out=$2 addr=""
	while [[ -z $addr ]] && kill -0 "$pid" 2>/dev/null; do
		sleep 0.1
		addr=$(awk '/^listening on / {print $3}' "$out.stdout")
	done
	[[ -n $addr ]] || { cat "$out.stderr" >&2; return 1; }
	echo "$addr"
}

# benchserverBin prints the absolute path of the benchserver to run: $BIN
# when set (a build of another commit, for alternating runs), otherwise
# bin/benchserver, built from this tree.
benchserverBin() {
	local bin=${BIN:-}
	if [[ -z $bin ]]; then
		mkdir -p bin
		go build -o bin/benchserver ./internal/bench/benchserver
		bin=bin/benchserver
	fi
	realpath "$bin"
}
