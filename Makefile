# peergroup developer targets. The control plane (kube-apiserver, etcd) is
# built from source once and cached under .cache/ (see hack/controlplane).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD := -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
# The simulated cluster: control plane from k8s.io/kubernetes v1.37.2, kwok, CoreDNS.
COMPONENTS := etcd kube-apiserver kube-controller-manager kube-scheduler kwok coredns

.PHONY: all build controlplane demo bench test test-short test-unit fuzz vet clean

all: build

build: ## Build the binaries into bin/ (static, as in the Dockerfile).
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o bin/ ./cmd/...

controlplane: ## Build every cluster component from source into .cache/ (minutes the first time).
	@hack/controlplane/build.sh $(COMPONENTS)

demo: ## The main job: simulated cluster, webhook from the chart, Cassandra RC scaled 1 -> 3, seeds agreed.
	@dir="$$(hack/controlplane/build.sh $(COMPONENTS) | tail -n 1)"; KUBEBUILDER_ASSETS="$$dir" go run ./test/demo

test: vet ## Every test: unit, golden, chart, end to end, fault, the simulated-cluster suite, then bounded fuzzing.
	@dir="$$(hack/controlplane/build.sh $(COMPONENTS) | tail -n 1)"; \
	KUBEBUILDER_ASSETS="$$dir" go test -race -count=1 -timeout 30m ./...
	@$(MAKE) --no-print-directory fuzz

# Each fuzz target (package dir:name) for FUZZTIME; findings land in the
# package's testdata/fuzz (see hack/fuzz.sh for the one engine flake it
# tolerates).
FUZZTIME ?= 20s
FUZZ_TARGETS := webhook:FuzzAdmissionReview webhook:FuzzPodAdmission webhook/admit:FuzzPatchEquivalence webhook/admit:FuzzAdmittedPodEquivalence
fuzz: ## Fuzz the admission path (decode, resolve, mutate, patch) for FUZZTIME per target.
	@FUZZTIME=$(FUZZTIME) hack/fuzz.sh $(FUZZ_TARGETS)

test-short: ## Everything but the simulated-cluster suite (go test -short).
	@dir="$$(hack/controlplane/build.sh | tail -n 1)"; \
	KUBEBUILDER_ASSETS="$$dir" go test -short -race -count=1 ./...

bench: ## Measure peergroup against a no-op webhook and no webhook; writes test/bench/RESULTS.md.
	@dir="$$(hack/controlplane/build.sh | tail -n 1)"; KUBEBUILDER_ASSETS="$$dir" go run ./test/bench -out test/bench/RESULTS.md

test-unit: ## Tests that need no control plane.
	go test -race -count=1 ./contract/... ./discovery/... ./internal/... ./webhook/... ./test/chart/...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...

clean:
	rm -rf bin .cache/demo
