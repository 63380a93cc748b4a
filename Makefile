# peergroup developer targets. The control plane (kube-apiserver, etcd) is
# built from source once and cached under .cache/ (see hack/controlplane).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# The release this tree is: the chart's appVersion, so the binaries, the
# image tag and the CLI's default image agree with what the chart deploys.
VERSION ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' charts/peergroup/Chart.yaml)
GOFLAGS_BUILD := -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
# The local cluster: control plane from k8s.io/kubernetes v1.37.2, kwok, CoreDNS,
# and the real node (kubelet, containerd with its runc shim and ctr) with the
# peer software it runs (nats-server).
COMPONENTS := etcd kube-apiserver kube-controller-manager kube-scheduler kwok coredns kubelet containerd containerd-shim-runc-v2 ctr nats-server kubectl helm
# What the real node takes from Debian: runc, the CNI plugins, and the
# static busybox that gives the NATS image its shell.
NODE_PACKAGES := runc containernetworking-plugins busybox-static

.PHONY: all build image controlplane node-packages debian-apps demo up down bench bench-seeds bench-scale test test-short test-unit fuzz vet clean

all: build

build: ## Build the binaries into bin/ (static, as in the Dockerfile), and the CLI again as the kubectl plugin bin/kubectl-peergroup.
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o bin/ ./cmd/...
	cp bin/peergroup bin/kubectl-peergroup

# The platforms of `make image` (linux); the binaries are cross-compiled.
IMAGE_ARCHES ?= amd64,arm64
image: ## Build the peergroup image without an engine (as the Dockerfile describes it) for linux/amd64 and linux/arm64: OCI layout bin/peergroup-image/ and archive bin/peergroup-image.tar.
	go run ./hack/image -out bin/peergroup-image.tar -layout bin/peergroup-image -arch $(IMAGE_ARCHES) -tag ghcr.io/peergroup/peergroup:$(VERSION) -version $(VERSION)

controlplane: ## Build every cluster component from source into .cache/ (minutes the first time).
	@hack/controlplane/build.sh $(COMPONENTS)

node-packages: ## Install what the real node takes from Debian (root; skipped when present).
	@missing=""; for p in $(NODE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; fi

debian-apps: ## Download and extract the Debian packages of the real applications (redis, rabbitmq, jgroups, serf) into .cache/debian, once.
	go run ./hack/debianapps

# The demo's application: nats (built from its module), or one taken from
# Debian's packages: redis, rabbitmq, jgroups, serf (docs/examples).
APP ?= nats
demo: node-packages ## The main job: a local cluster with a real node, the chart installed by Helm, NATS RC scaled 1 -> 3 into one cluster (APP=redis|rabbitmq|jgroups|serf: that server instead).
	@if [ "$(APP)" != nats ]; then go run ./hack/debianapps $(APP); fi
	@dir="$$(hack/controlplane/build.sh $(COMPONENTS) | tail -n 1)"; APP="$(APP)" KUBEBUILDER_ASSETS="$$dir" go run ./test/demo

up: node-packages ## A playground: the demo's cluster (a real node, the chart installed by Helm) left running; prints the KUBECONFIG and PATH to use. `make down` removes it.
	@dir="$$(hack/controlplane/build.sh $(COMPONENTS) | tail -n 1)"; \
	go build -o .cache/playground-bin/playground ./test/playground && KUBEBUILDER_ASSETS="$$dir" .cache/playground-bin/playground up

down: ## Remove everything `make up` made, also after it was killed.
	@go build -o .cache/playground-bin/playground ./test/playground && .cache/playground-bin/playground down

test: vet node-packages debian-apps ## Every test: unit, golden, chart, end to end, fault, the local-cluster suite with the real node, two real nodes losing one, then bounded fuzzing.
	@dir="$$(hack/controlplane/build.sh $(COMPONENTS) | tail -n 1)"; \
	KUBEBUILDER_ASSETS="$$dir" go test -race -count=1 -timeout 60m ./...
	@$(MAKE) --no-print-directory fuzz

# Each fuzz target (package dir:name) for FUZZTIME; findings land in the
# package's testdata/fuzz (see hack/fuzz.sh for the one engine flake it
# tolerates).
FUZZTIME ?= 20s
FUZZ_TARGETS := webhook:FuzzAdmissionReview webhook:FuzzPodAdmission webhook/admit:FuzzPatchEquivalence
fuzz: ## Fuzz the admission path (decode, resolve, mutate, patch) for FUZZTIME per target.
	@FUZZTIME=$(FUZZTIME) hack/fuzz.sh $(FUZZ_TARGETS)

test-short: ## Everything but the simulated-cluster suite (go test -short).
	@dir="$$(hack/controlplane/build.sh | tail -n 1)"; \
	KUBEBUILDER_ASSETS="$$dir" go test -short -race -count=1 ./...

bench: ## Measure peergroup against a no-op webhook and no webhook; writes test/bench/RESULTS.md.
	@dir="$$(hack/controlplane/build.sh | tail -n 1)"; KUBEBUILDER_ASSETS="$$dir" go run ./test/bench -out test/bench/RESULTS.md

bench-seeds: ## Measure seed-discovery as a refreshing sidecar (DNS q/s, memory) and its decision time; appends a section to test/bench/RESULTS.md.
	go run ./test/bench/seeds -out test/bench/RESULTS.md

bench-scale: node-packages ## 30 NATS pods created at once on the real node beside 3: time to one cluster and to the full mesh, DNS queries per pod (for test/bench/RESULTS.md §11).
	@dir="$$(hack/controlplane/build.sh $(COMPONENTS) | tail -n 1)"; \
	KUBEBUILDER_ASSETS="$$dir" go test -count=1 -timeout 30m -v ./test/cluster -run 'TestRealNATSThirtyAtOnce' -args -scale | grep -E '^(---|ok|FAIL|cluster: NATS)|NATS pods created'

test-unit: ## Tests that need no control plane.
	go test -race -count=1 ./contract/... ./discovery/... ./internal/... ./webhook/... ./inspect/... ./probe/... ./test/chart/...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...

clean:
	rm -rf bin .cache/demo
