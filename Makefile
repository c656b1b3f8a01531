GO ?= go
BIN := bin/hodei
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
GOBIN := $(shell $(GO) env GOPATH)/bin

.PHONY: build test test-long bench proto run clean

build:
	$(GO) build -o $(BIN) .

proto:
	$(GO) install $(PROTOC_GEN_GO)
	$(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH="$(GOBIN):$$PATH" protoc -I proto --go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative proto/hodei.proto

run: build
	./$(BIN) serve --dev --data-dir ./hodei-data
