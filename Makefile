# reagent — the IronFlock device agent.
#
#   make run     devcloud + the agent against it (Ctrl-C stops both)
#   make test    every test: unit and integration (real Docker engine, router, registry, SQLite)
#   make bench   measure the agent against the budgets of DESIGN.md §6
#
# Everything a fresh machine needs is installed by the targets themselves.

SHELL       := /bin/bash
GO          ?= go
VERSION     := $(shell tr -d '[:space:]' < src/release/version.txt)
HOST_OS     := $(shell $(GO) env GOOS)
HOST_ARCH   := $(shell $(GO) env GOARCH)
BUCKET      ?= build/bucket
LDFLAGS_X   := -X reagent/src/release.BuildArch
TEST_TIMEOUT ?= 25m

export CGO_ENABLED := 0
# ugorji/codec (nexus's serializer) without its generated fast paths: 4.5 MB
# less binary and ~1.7 MiB less RSS; decoding falls back to reflection,
# which the agent's few messages per second do not notice. Tests run with
# the same tag, so what is tested is what ships.
BUILD_TAGS  := codec.notfastpath
export GOFLAGS += -tags=$(BUILD_TAGS)

.PHONY: help deps build build-all build-all-docker devcloud test test-unit bench run run_mac \
        download_frpc publish publish-latestVersions rollout clean lint fmt

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)
	@echo "targets: build build-all build-all-docker devcloud test bench run run_mac lint publish publish-latestVersions rollout clean"

## deps: Go modules and the static busybox the test images are built from.
deps:
	@$(GO) mod download
	@if ! dpkg -s busybox-static >/dev/null 2>&1; then \
	    echo "installing busybox-static (test images are built from it)"; \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get install -y busybox-static >/dev/null 2>&1 || \
	      { $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y busybox-static >/dev/null; }; \
	fi

## build: static host binary build/reagent
build:
	$(GO) build -trimpath -ldflags "-s -w $(LDFLAGS_X)=$(HOST_ARCH)" -o build/reagent ./src

## build-all: one binary per line of `targets` → build/reagent-<os>-<arch>[v<variant>]
build-all:
	./scripts/build-all.sh build

## build-all-docker: build-all inside an image built from Dockerfile.build
build-all-docker:
	./scripts/build-all-docker.sh

## devcloud: the local stand-in for the IronFlock cloud → build/devcloud
devcloud:
	$(GO) build -trimpath -o build/devcloud ./src/cmd/devcloud

## test: everything (unit + integration against the real engine, router, registry, SQLite)
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## test-unit: the fast part only (-short skips what needs Docker)
test-unit:
	$(GO) test -short -count=1 ./...

## bench: the agent against the budgets of DESIGN.md §6 (table, build/bench.json), then the micro-benchmarks; docs/benchmarks.md
bench: deps build devcloud
	status=0; \
	$(GO) run ./src/cmd/bench -agent build/reagent -out build/bench.json || status=$$?; \
	$(GO) test -run '^$$' -bench . -benchmem -benchtime=1s -count=1 ./src/store ./src/wamp ./src/logs ./src/docker || status=1; \
	exit $$status

## run: devcloud and the agent against it; Ctrl-C stops both
run: deps build devcloud
	./scripts/run-dev.sh

## run_mac: the same with Docker Desktop's socket and without NetworkManager
run_mac: build devcloud
	DOCKER_HOST=unix://$$HOME/Library/Containers/com.docker.docker/Data/docker.raw.sock \
	  REAGENT_FLAGS="-nmw=false" ./scripts/run-dev.sh

## download_frpc: frp is linked in as a Go library; this only pre-fetches modules for offline builds
download_frpc:
	$(GO) mod download

## publish: upload build/reagent-* to $(BUCKET) as re-agent/<os>/<arch>/<version>/reagent[.exe] + .sha256
publish:
	./scripts/publish.sh "$(BUCKET)" "$(VERSION)"

## publish-latestVersions: upload availableVersions.json (the release gate) to $(BUCKET)
publish-latestVersions:
	./scripts/publish.sh "$(BUCKET)" "$(VERSION)" --versions-only

rollout: build-all-docker publish publish-latestVersions

clean:
	find build -mindepth 1 ! -name .gitkeep -exec rm -rf {} +

lint:
	@out=$$(gofmt -l src); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w src
