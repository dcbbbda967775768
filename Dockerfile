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

# Stage 2: no shell, no package manager, CA certificates and a nonroot user
# (65532) only. The chart runs it with runAsNonRoot, a read-only root
# filesystem and no capabilities.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# No ENTRYPOINT: each Deployment of the chart sets `command` to
# /usr/local/bin/dlite-controller or /usr/local/bin/dlite-scheduler.
# `docker run IMAGE` runs the controller.
CMD ["/usr/local/bin/dlite-controller"]
