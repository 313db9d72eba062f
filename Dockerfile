# syntax=docker/dockerfile:1.7
#
# imds_exporter container image: a static musl binary on distroless/static, non-root (uid 65532).
#
# Releases are built and pushed by .github/workflows/release.yml (docs/releasing.md), as
# ghcr.io/imds-exporter/imds_exporter:<version> with an SBOM and provenance. By hand, multi-arch
# (linux/amd64 + linux/arm64) with buildx:
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=<version> --build-arg REVISION="$(git rev-parse HEAD)" \
#     -t registry.example.com/imds_exporter:<version> --push .
#
# How the cross-compilation works (no QEMU emulation anywhere):
# - The builder stage runs on the *build* machine's platform (`--platform=$BUILDPLATFORM`), once per
#   target platform; buildx passes TARGETARCH (amd64 | arm64) and we map it to a Rust musl target.
# - Rust ships the musl C runtime (crt objects and libc.a) inside the `rust-std` component of every
#   `*-unknown-linux-musl` target ("self-contained" linking), so no musl C toolchain is needed.
# - The linker is `rust-lld`, which ships with every rustup toolchain and links for any architecture.
# - The one C dependency is *ring* (rustls' crypto, for --web.config.file's TLS): its C and assembly
#   are freestanding (no libc headers), so clang, which targets every architecture, compiles them
#   for either musl target, and llvm-ar archives them (CC_<target>/AR_<target> below). No musl C
#   toolchain and no emulation are needed.
# - scripts/build-release runs the same compilation without a container, for the release's binaries.
# - The result is a statically linked, stripped ELF (release profile: lto, codegen-units=1, strip),
#   so the final stage needs no libc, no shell and no package manager.
#
# Dependency caching: BuildKit cache mounts keep the cargo registry and the target directory between
# builds, so a source change recompiles only this crate. Because the target directory is a cache
# mount (not part of the image layer), the binary is copied out to /out in the same RUN step.

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGETARCH
WORKDIR /src

# Map Docker's architecture name to the Rust target and install that target's standard library.
RUN case "${TARGETARCH}" in \
      amd64) echo x86_64-unknown-linux-musl > /rust-target ;; \
      arm64) echo aarch64-unknown-linux-musl > /rust-target ;; \
      *) echo "unsupported TARGETARCH=${TARGETARCH} (supported: amd64, arm64)" >&2; exit 1 ;; \
    esac \
 && rustup target add "$(cat /rust-target)"

# clang and llvm-ar for ring's C code (see the header comment). Debian's current ones: the builder
# image is pinned by RUST_VERSION, and these only compile ring's few C files.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm \
 && rm -rf /var/lib/apt/lists/*

# Link every musl target with rust-lld, and compile C for it with clang (see the header comment).
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
    CC_x86_64_unknown_linux_musl=clang \
    CC_aarch64_unknown_linux_musl=clang \
    AR_x86_64_unknown_linux_musl=llvm-ar \
    AR_aarch64_unknown_linux_musl=llvm-ar

# Only what the build needs; .dockerignore keeps everything else out of the context.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src

# build.rs records the revision for imds_exporter_build_info; .git is not in the build context, so
# it comes from this build argument (buildx --build-arg REVISION=$(git rev-parse HEAD)).
ARG REVISION=unknown
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,id=imds-exporter-target-${TARGETARCH},sharing=locked \
    target="$(cat /rust-target)" \
 && IMDS_EXPORTER_REVISION="${REVISION}" cargo build --release --locked --target "${target}" --bin imds_exporter \
 && mkdir -p /out \
 && cp "target/${target}/release/imds_exporter" /out/imds_exporter

# distroless/static: CA certificates, tzdata and an /etc/passwd with the `nonroot` user (65532),
# nothing else. For supply-chain pinning, replace the tag with its digest (tag@sha256:...).
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="imds_exporter" \
      org.opencontainers.image.description="Prometheus exporter for the health of EC2 instance credentials: IMDS, credential rotation and clock" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/imds-exporter/imds_exporter" \
      org.opencontainers.image.documentation="https://github.com/imds-exporter/imds_exporter/blob/main/docs/deploy.md"

COPY --from=builder --chown=0:0 --chmod=0555 /out/imds_exporter /usr/local/bin/imds_exporter

# Numeric uid:gid so Kubernetes' runAsNonRoot check can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 19254
ENTRYPOINT ["/usr/local/bin/imds_exporter"]
