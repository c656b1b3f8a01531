GO ?= go
BIN := bin/hodei
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
PROTOC_GEN_GATEWAY := github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.33.0
PROTOC_GEN_OPENAPI := github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@v2.33.0
GOBIN := $(shell $(GO) env GOPATH)/bin
# Build tags that keep what the CLI never uses out of every hodei process's
# start-up (see BENCHMARKS.md, "CLI start-up"): urfave/cli's man/markdown
# generator (blackfriday) and gRPC's x/net/trace. Exported through GOFLAGS,
# so that the tests' and benchmarks' own `go build` of the binary uses them.
TAGS := urfave_cli_no_docs,grpcnotrace
export GOFLAGS := $(strip $(GOFLAGS) -tags=$(TAGS))
# The binary is static (no cgo): no dynamic loader at each start (about
# 1 ms and 75 page faults of every CLI call), and one file that runs on any
# Linux of its architecture. os/user and net then use their pure-Go code;
# the agent asks getent for users and groups that /etc/passwd and
# /etc/group do not have (LDAP, SSSD). Only the binary: the race detector
# needs cgo, so the tests build with it. The tests' build of the binary
# reads this line.
BUILD_ENV := CGO_ENABLED=0
# What `hodei version` prints (cli/version.go), stamped in with -ldflags:
# the release (`git describe`; v0.0.0-dev before the first v* tag), the
# commit, whether the work tree had changes, and the build time (UTC;
# SOURCE_DATE_EPOCH, if set, for a reproducible build). The tests' plain
# `go build` leaves these out: hodei then reports what the Go toolchain
# recorded.
PKG := github.com/hodei-jobs/hodei/cli
VERSION := $(shell git describe --tags --match 'v*' --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
MODIFIED := $(shell test -n "$$(git status --porcelain 2>/dev/null)" && echo true)
BUILD_DATE := $(shell date -u -d "@$${SOURCE_DATE_EPOCH:-$$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT) -X $(PKG).Modified=$(MODIFIED) \
	-X $(PKG).BuildDate=$(BUILD_DATE)
# The release binaries `make dist` builds, as GOOS/GOARCH.
DIST_PLATFORMS := linux/amd64 linux/arm64
# Core packages run under the race detector; the rest (CLI, end-to-end
# tests that drive the real binary) run without it to stay fast.
CORE := ./job/... ./scheduler/... ./cluster/... ./wfq/... ./quota/... ./store/... ./server/... ./agent/... ./client/... \
	./auth/... ./pki/... ./seal/... ./atomicfile/... ./proto/...

# Where `make install` puts things: the binary in $(PREFIX)/bin, the
# systemd units in $(UNITDIR) (systemd reads /usr/local/lib/systemd/system
# as well as /usr/lib/systemd/system), the config files in
# $(SYSCONFDIR)/hodei; all under $(DESTDIR) when set (for packaging).
PREFIX ?= /usr/local
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc

.PHONY: build dist install test bench proto proto-check run clean

build:
	$(BUILD_ENV) $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) .

# dist cross-compiles the release binaries, static and without local paths
# (-trimpath) or symbol tables (-s -w), into dist/hodei-OS-ARCH, checks
# that each is static (built with CGO_ENABLED=0), and writes their
# checksums to dist/SHA256SUMS (verify with `sha256sum -c SHA256SUMS`).
dist:
	rm -rf dist
	mkdir -p dist
	set -e; for p in $(DIST_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		GOOS=$$os GOARCH=$$arch $(BUILD_ENV) $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w' \
			-o dist/hodei-$$os-$$arch .; \
		$(GO) version -m dist/hodei-$$os-$$arch | grep -q 'CGO_ENABLED=0'; \
	done
	cd dist && sha256sum hodei-* > SHA256SUMS && sha256sum -c SHA256SUMS

# install installs the binary $(BIN) (`make build` first, or BIN= a
# release binary: install builds nothing, so `sudo make install` needs no
# Go toolchain for root), the systemd units (their ExecStart pointed at
# $(PREFIX)/bin/hodei) and the example configs (*.yaml.example, always
# refreshed). It writes serve.yaml from its example only when there is
# none, and never touches an existing config. Then: systemctl daemon-reload.
install:
	@test -x $(BIN) || { echo "make install: no $(BIN): run make build first (or pass BIN=path/to/hodei)" >&2; exit 1; }
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/hodei
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/hodei
	set -e; for u in hodei-server hodei-agent; do \
		sed 's#/usr/local/bin/hodei#$(PREFIX)/bin/hodei#' deploy/systemd/$$u.service > $(DESTDIR)$(UNITDIR)/$$u.service.tmp; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.service.tmp; \
		mv $(DESTDIR)$(UNITDIR)/$$u.service.tmp $(DESTDIR)$(UNITDIR)/$$u.service; \
	done
	install -m 0644 deploy/config/serve.yaml.example $(DESTDIR)$(SYSCONFDIR)/hodei/serve.yaml.example
	install -m 0600 deploy/config/agent.yaml.example $(DESTDIR)$(SYSCONFDIR)/hodei/agent.yaml.example
	test -e $(DESTDIR)$(SYSCONFDIR)/hodei/serve.yaml || \
		install -m 0644 deploy/config/serve.yaml.example $(DESTDIR)$(SYSCONFDIR)/hodei/serve.yaml

test:
	$(GO) vet ./...
	$(GO) test -race -short -count=1 $(CORE)
	$(GO) test -count=1 -run 'Fair|Fuzz|MillionTaskArray' ./cluster
	$(GO) test -count=1 -run 'AgentHeapFlat' ./agent
	$(BUILD_ENV) $(GO) test -count=1 -run 'User' ./agent
	$(GO) test -count=1 ./cli/... .

# bench runs every benchmark once at a size that gives stable figures; the
# figures go to bench.txt and, by hand, into BENCHMARKS.md.
bench:
	$(GO) test -run '^$$' -bench . -skip ListFiltered -benchtime 20000x ./store | tee bench.txt
	$(GO) test -run '^$$' -bench ListFiltered ./store | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'ListWindow/jobs=1000000' -benchtime 200x ./store | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'JobsByPrefixScoped/others=1000000' -benchtime 2000x ./store | tee -a bench.txt
	$(GO) test -run '^$$' -bench . -benchtime 20x ./scheduler | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'PipelineValidate|DependencyRelease|WorkerHello' -benchtime 20x ./cluster | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'WorkerPage' -benchtime 200x ./cluster | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'DispatchBacklog' -benchtime 320x ./cluster | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'UnplaceableBacklog' -benchtime 20x ./cluster | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'QueuedHeap' -benchtime 1x ./cluster | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'Figures' -benchtime 2000x ./cluster | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'Restart' -benchtime 1x . | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'CLI' -benchtime 1x . | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'Listings' -benchtime 1x . | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'WebPageFirstLoad' -benchtime 20x . | tee -a bench.txt
	$(GO) test -run '^$$' -bench . -skip 'SubmitBatch|NonReadingStreams|REST|SSE|ListPipelines' -benchtime 20000x ./server | tee -a bench.txt
	$(GO) test -run '^$$' -bench RESTListJobs -benchtime 2000x ./server | tee -a bench.txt
	$(GO) test -run '^$$' -bench ListPipelines -benchtime 200x ./server | tee -a bench.txt
	$(GO) test -run '^$$' -bench SSEDelivery -benchtime 2000x ./server | tee -a bench.txt
	$(GO) test -run '^$$' -bench NonReadingStreams -benchtime 1x ./server | tee -a bench.txt
	$(GO) test -run '^$$' -bench SubmitBatch -benchtime 500000x ./server | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'TrivialJobs|PTYSpawn|AttemptTrue|SupervisedTrue' -skip OverSpawn -benchtime 2000x ./agent | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'TrivialJobsOverSpawn|SupervisedParallel' -benchtime 8000x ./agent | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'JobLatency' -benchtime 200x ./agent | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'AgentRestart' -benchtime 20x ./agent | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'KeystrokeEcho' -benchtime 2000x ./agent | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'Throughput' -benchtime 5x ./agent | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'Masker' ./agent | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'AgentHeap' -benchtime 20000x ./agent | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'AllToAllRefusal' ./job | tee -a bench.txt
	$(GO) test -run '^$$' -bench . ./pki ./seal | tee -a bench.txt

# proto generates the Go code of hodei.proto, its REST/JSON gateway
# (hodei.pb.gw.go) and its OpenAPI document (openapi.swagger.json, served
# at /openapi.json), each with a pinned plugin; proto/third_party holds the
# proto files of the options it uses.
proto:
	$(GO) install $(PROTOC_GEN_GO)
	$(GO) install $(PROTOC_GEN_GO_GRPC)
	$(GO) install $(PROTOC_GEN_GATEWAY)
	$(GO) install $(PROTOC_GEN_OPENAPI)
	PATH="$(GOBIN):$$PATH" protoc -I proto -I proto/third_party --go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		--grpc-gateway_out=proto --grpc-gateway_opt=paths=source_relative \
		--openapiv2_out=proto --openapiv2_opt=allow_merge=true,merge_file_name=openapi,disable_default_errors=true \
		proto/hodei.proto
	PATH="$(GOBIN):$$PATH" protoc -I . --go_out=. --go_opt=paths=source_relative store/record/record.proto

# proto-check fails when the committed generated code differs from what
# `make proto` produces (or that it did not commit).
proto-check: proto
	git diff --exit-code -- proto/ store/record/
	test -z "$$(git status --porcelain -- proto/ store/record/)"

run: build
	./$(BIN) serve --dev --data-dir ./hodei-data

clean:
	rm -rf bin dist bench.txt
