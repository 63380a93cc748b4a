# peergroup developer targets. The control plane (kube-apiserver, etcd) is
# built from source once and cached under .cache/ (see hack/controlplane).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD := -trimpath -ldflags "-s -w -X main.version=$(VERSION)"

.PHONY: all build controlplane demo test test-unit test-e2e vet fmt lint-chart clean

all: build

build: ## Build the binaries into bin/ (static, as in the Dockerfile).
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o bin/ ./cmd/...

controlplane: ## Build kube-apiserver and etcd from source into .cache/ (minutes the first time).
	@hack/controlplane/build.sh

demo: ## The main job: local control plane, webhook from the chart, a Cassandra pod injected.
	@dir="$$(hack/controlplane/build.sh | tail -n 1)"; KUBEBUILDER_ASSETS="$$dir" go run ./test/demo

test: vet ## Every test: unit, golden, chart and end to end against the real API server.
	@dir="$$(hack/controlplane/build.sh | tail -n 1)"; \
	KUBEBUILDER_ASSETS="$$dir" go test -race -count=1 ./...

test-unit: ## Tests that need no control plane.
	go test -race -count=1 ./webhook/... ./test/chart/...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...

clean:
	rm -rf bin .cache/demo
