# syntax=docker/dockerfile:1
# One image, two binaries: the webhook (entrypoint) and seed-discovery,
# which the webhook injects as an init container using this same image.

ARG GO_VERSION=1.26
# The build stage runs on the builder's own platform and cross-compiles
# (pure Go), so a multi-platform build (`docker buildx build --platform
# linux/amd64,linux/arm64`) needs no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# Sources only; .dockerignore keeps out tests, charts and the local cache.
COPY . .
ARG VERSION=dev
# No defaults: BuildKit gives TARGETOS and TARGETARCH the target platform's
# values only when the ARG declares none; `ARG TARGETARCH=amd64` would put
# amd64 binaries into the arm64 image.
ARG TARGETOS TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ ./cmd/peergroup-webhook ./cmd/seed-discovery

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/peergroup-webhook /out/seed-discovery /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/peergroup-webhook"]
