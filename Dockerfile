# syntax=docker/dockerfile:1
#
# One image for dlite-controller, dlite-scheduler and kubectl-dlite.
# Build:  docker build -t ghcr.io/dlite-dev/deploymentlite:0.1.0 .
#
# Stage 1 builds fully static binaries: Rust on Alpine targets
# x86_64-unknown-linux-musl (aarch64-... on arm64), which links the C
# runtime statically by default; TLS is rustls with ring (no OpenSSL).
FROM rust:1.95-alpine AS build
# ring compiles a little C and assembly: it needs the musl headers;
# binutils gives readelf for the static check below. Versions come from the
# Alpine release the pinned rust image is built on.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev binutils
WORKDIR /src
COPY . .
# Symbols stripped: the binaries are smaller and a panic still prints its
# message (backtraces lose function names).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin dlite-controller --bin dlite-scheduler --bin kubectl-dlite \
 && mkdir -p /out \
 && cp target/release/dlite-controller target/release/dlite-scheduler target/release/kubectl-dlite /out/ \
 && for b in /out/*; do \
        readelf -l "$b" > /tmp/headers || exit 1; \
        if grep -q 'Requesting program interpreter' /tmp/headers; then \
            echo "$b is dynamically linked; the final image has no libc" >&2; exit 1; \
        fi; \
    done

# Stage 2: an empty base (nothing pulled): the three static binaries and
# nothing else: no shell, no package manager, no libc, no /etc/passwd (the
# user is numeric), no CA bundle (in a pod the client trusts the
# ServiceAccount's ca.crt; a kubeconfig names its own CA). The chart runs it
# with runAsNonRoot, a read-only root filesystem and no capabilities.
# `make image` (hack/image) builds this same stage with podman from static
# binaries built on the host; tests/image.rs checks both agree.
FROM scratch
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
LABEL org.opencontainers.image.title="deploymentlite" \
      org.opencontainers.image.description="dlite-controller, dlite-scheduler and kubectl-dlite" \
      org.opencontainers.image.source="https://github.com/dlite-dev/deploymentlite" \
      org.opencontainers.image.licenses="Apache-2.0"
# No ENTRYPOINT: each Deployment of the chart sets `command` to
# /usr/local/bin/dlite-controller or /usr/local/bin/dlite-scheduler.
# `docker run IMAGE` runs the controller.
CMD ["/usr/local/bin/dlite-controller"]
