# connectkit's developer commands. `make help` lists them.
SHELL := /usr/bin/env bash -o pipefail
.DEFAULT_GOAL := help

GO ?= go
TOOL := $(GO) tool -modfile=tools/go.mod
BUF := $(TOOL) buf
# protovalidate's validate.proto comes from this Go module (module cache), never
# from a hand-made copy. Its releases are numbered apart from the Go library's
# (buf.build/go/protovalidate in go.mod): keep it at the newest release, which
# matches the generated types go.mod names
# (buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go).
PROTOVALIDATE_VERSION := v1.2.2
# google/api/annotations.proto and http.proto (the google.api.http option of
# REST routes) come from this Go module's third_party/googleapis, a copy of
# googleapis' files whose go_package is the one genproto's Go types have
# (google.golang.org/genproto/googleapis/api/annotations): their messages,
# fields and extension are those genproto's Go types register (compared as
# descriptors); only comments and the C++ cc_enable_arenas option differ.
GOOGLEAPIS_MODULE := github.com/grpc-ecosystem/grpc-gateway@v1.16.0

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run the example service on :8080 (admin on 127.0.0.1:9090)
	$(GO) run ./cmd/example

.PHONY: protodeps
protodeps: ## Copy third-party .proto files from the Go module cache into .protodeps/
	@rm -rf .protodeps && mkdir -p .protodeps
	@pv=$$($(GO) mod download -json github.com/bufbuild/protovalidate@$(PROTOVALIDATE_VERSION) | sed -n 's/.*"Dir": "\(.*\)",/\1/p') && \
		cp -r "$$pv/proto/protovalidate" .protodeps/protovalidate
	@ga=$$($(GO) mod download -json $(GOOGLEAPIS_MODULE) | sed -n 's/.*"Dir": "\(.*\)",/\1/p') && \
		mkdir -p .protodeps/googleapis/google/api && \
		cp "$$ga/third_party/googleapis/google/api/annotations.proto" "$$ga/third_party/googleapis/google/api/http.proto" .protodeps/googleapis/google/api/
	@$(GO) mod download -modfile=tools/go.mod connectrpc.com/conformance
	@cf=$$($(GO) list -modfile=tools/go.mod -m -f '{{.Dir}}' connectrpc.com/conformance) && \
		cp -r "$$cf/proto" .protodeps/conformance
	@chmod -R u+w .protodeps

.PHONY: generate
generate: protodeps ## Generate Go code from proto/ into gen/ (and internal/gen)
	$(BUF) format -w proto
	$(BUF) format -w internal/proto
	$(BUF) generate
	$(BUF) generate --template internal/buf.gen.yaml

.PHONY: checkgenerate
checkgenerate: generate ## Fail if generated code is not what is committed
	@test -z "$$(git status --porcelain -- gen internal/gen proto internal/proto)" || \
		{ git status --porcelain -- gen internal/gen proto internal/proto; echo "generated code is stale: run make generate and commit"; exit 1; }

# REDOCLY_CLI lints the OpenAPI documents make generate writes (npm's
# registry, not Go's: needs npx). The minimal ruleset checks that each is a
# valid Swagger 2.0 document; recommended also wants security schemes and a
# 4XX response, which the example's documents have not: its authentication
# (EXAMPLE_API_TOKENS) is optional and the protos do not declare it, and its
# errors are the "default" response.
REDOCLY_CLI := @redocly/cli@2.77.0

.PHONY: lint-openapi
lint-openapi: ## Check the generated OpenAPI documents (gen/**/*.swagger.json) with Redocly CLI, through npx
	npx --yes $(REDOCLY_CLI) lint --extends=minimal $$(git ls-files 'gen/*.swagger.json')

.PHONY: lint
lint: protodeps ## Vet, check formatting and go.mod tidiness, lint the protos
	$(GO) vet ./...
	$(GO) mod tidy -diff
	cd tools && $(GO) mod tidy -diff
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(BUF) lint
	$(BUF) format -d --exit-code proto
	$(BUF) format -d --exit-code internal/proto

.PHONY: test
test: checkgenerate lint cross conformance ## Everything CI runs: generate check, lint, cross-builds, race tests, conformance
	$(GO) test -race -count=1 ./...

# BENCH_FLAGS go to internal/bench/benchrun (see scripts/bench.sh).
# Short runs and many rounds: each round's ratios compare runs seconds
# apart, which holds better on a noisy machine than long runs (BENCHMARKS.md 1.13).
BENCH_FLAGS ?= -rounds 8 -n 50000 -n1 5000 -wrk-duration 2s

.PHONY: bench
bench: ## Same-run benchmarks: kit vs connect-go vs grpc-go (h2load, wrk); tables to bin/bench.md
	scripts/bench.sh -out bin/bench.md $(BENCH_FLAGS)

# PUBSUB_BENCH_FLAGS go to internal/bench/pubsubrun (`go run ./internal/bench/pubsubrun -h`).
PUBSUB_BENCH_FLAGS ?= -rounds 6

# The fuzz targets' seeds run in make test; this explores past them.
FUZZTIME ?= 1m

.PHONY: fuzz
fuzz: ## Fuzz the batching listener's writes, kit's JSON log lines, what arrives on kit's serving port, pubsub's deliveries and natsjs's reply-subject parser, FUZZTIME each (default 1m)
	$(GO) test -run XXX -fuzz FuzzWriteSequence -fuzztime $(FUZZTIME) ./internal/batchconn
	$(GO) test -run XXX -fuzz FuzzJSONHandler -fuzztime $(FUZZTIME) ./kit
	$(GO) test -run XXX -fuzz FuzzServingPort -fuzztime $(FUZZTIME) ./kit
	$(GO) test -run XXX -fuzz FuzzRESTRoute -fuzztime $(FUZZTIME) ./kit
	$(GO) test -run XXX -fuzz FuzzDelivery -fuzztime $(FUZZTIME) ./pubsub
	$(GO) test -run XXX -fuzz FuzzParseAckMetadata -fuzztime $(FUZZTIME) ./pubsub/natsjs

.PHONY: bench-pubsub
bench-pubsub: ## pubsub on embedded JetStream vs the bare JetStream loop, same-round ratios; ~3 min
	$(GO) run ./internal/bench/pubsubrun -out bin/bench-pubsub.md $(PUBSUB_BENCH_FLAGS)

.PHONY: bench-instr
bench-instr: ## Instructions per call (serve) and per message (pubsub) under callgrind: steadier than CPU time; ~6 min
	scripts/bench-instr.sh serve
	scripts/bench-instr.sh pubsub

.PHONY: bench-gc
bench-gc: ## The collector's work per Connect JSON call (connect, kit-nochain, kit), counted by the runtime on one core; ~2 min
	scripts/bench-gc.sh

.PHONY: bench-alloc
bench-alloc: ## Bytes and objects a served call allocates, by function (connect, kit-nochain, kit; gRPC and JSON); ~3 min
	scripts/bench-alloc.sh

.PHONY: bench-trace
bench-trace: ## One call in flight, traced: each goroutine's time on a call's path on one core, the runtime's hand-offs and wakes a call on two (connect, kit-nochain, kit; gRPC and JSON); ~1.5 min
	ROUNDS=2 scripts/bench-trace.sh
	LOAD=json ROUNDS=2 scripts/bench-trace.sh
	PIN=unpinned scripts/bench-trace.sh
	PIN=unpinned LOAD=json scripts/bench-trace.sh

.PHONY: conformance
.PHONY: cross
cross: ## Build and vet for targets other than this machine's: 32-bit (386) and Windows
	GOARCH=386 $(GO) vet ./...
	GOOS=windows $(GO) build ./...

conformance: ## Run the Connect conformance suite (server mode) against internal/conformance
	$(GO) build -o bin/conformance-server ./internal/conformance/cmd/conformance-server
	$(TOOL) connectconformance --mode server --conf internal/conformance/config.yaml \
		--parallel 32 --max-servers 8 -- bin/conformance-server
