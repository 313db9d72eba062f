"""Static checks of the Dockerfile against the tree (no container engine runs on these machines).

What `docker build` would find out late: a COPY of a path that does not exist or that
.dockerignore keeps out of the context, a Cargo target the copied tree lacks, a final image that is
not static/non-root. The compilation itself is scripts/build-release (the release binaries): its
plan is checked against this Dockerfile in test_release.py, and `scripts/test-deploy --build` runs it.
"""

from __future__ import annotations

import fnmatch
import pathlib
import re
import shlex
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        buf += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))):
            allowed = negate
    return allowed


def context_copies() -> list[str]:
    """Source paths of every COPY/ADD that reads the build context (not --from=)."""
    sources = []
    for word, args in instructions():
        if word in ("COPY", "ADD"):
            tokens = shlex.split(args)
            if any(t.startswith("--from") for t in tokens):
                continue
            paths = [t for t in tokens if not t.startswith("--")]
            sources.extend(paths[:-1])
    return sources


def test_builder_runs_on_the_build_platform_and_final_stage_is_static_distroless():
    first, last = stages()[0], stages()[-1]
    assert first[0][1].startswith("--platform=$BUILDPLATFORM rust:")
    assert re.fullmatch(r"(gcr\.io/distroless/static-debian\d+:nonroot(@sha256:[0-9a-f]{64})?|scratch)", last[0][1])


def test_cross_compiles_to_musl_for_amd64_and_arm64_without_emulation():
    assert "ARG TARGETARCH" in DOCKERFILE
    assert "amd64) echo x86_64-unknown-linux-musl" in DOCKERFILE
    assert "arm64) echo aarch64-unknown-linux-musl" in DOCKERFILE
    assert "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld" in DOCKERFILE
    assert "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld" in DOCKERFILE
    assert "qemu" not in DOCKERFILE.lower().replace("no qemu emulation", "")


def test_dependency_caching_uses_buildkit_cache_mounts():
    run = next(args for word, args in instructions() if word == "RUN" and "cargo build" in args)
    assert "--mount=type=cache,target=/usr/local/cargo/registry" in run
    assert "--mount=type=cache,target=/src/target" in run
    assert "--release --locked" in run


def test_every_copied_path_exists_and_is_in_the_build_context():
    sources = context_copies()
    assert sources, "the builder copies the sources"
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such path in the tree"
        assert dockerignore_allows(src), f"COPY {src}: excluded by .dockerignore"


def test_context_holds_every_file_cargo_needs():
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    copied = context_copies()

    def covered(path: str) -> bool:
        return any(path == c or path.startswith(c.rstrip("/") + "/") for c in copied)

    build = manifest.get("package", {}).get("build")
    if build not in (None, False):
        assert covered(build), f"build script {build} is not copied"
    elif (ROOT / "build.rs").exists():
        assert covered("build.rs"), "build.rs exists but is not copied"
    for section in ("bin", "lib", "test", "bench", "example"):
        entries = manifest.get(section, [])
        for entry in entries if isinstance(entries, list) else [entries]:
            if "path" in entry:
                # Explicit targets are parsed even when not built: their file must exist.
                assert covered(entry["path"]), f"[[{section}]] {entry['path']} is not copied"
    assert manifest["package"]["name"] == "imds_exporter"
    assert covered("Cargo.lock"), "--locked needs Cargo.lock"


def test_release_profile_gives_a_small_stripped_binary():
    profile = tomllib.loads((ROOT / "Cargo.toml").read_text())["profile"]["release"]
    assert profile.get("strip") in (True, "symbols", "debuginfo")
    assert profile.get("lto") in (True, "fat", "thin")


def test_final_image_is_non_root_and_runs_only_the_exporter():
    final = dict(stages()[-1])
    assert final["USER"] == "65532:65532"
    assert final["EXPOSE"] == "19254"
    assert final["ENTRYPOINT"] == '["/usr/local/bin/imds_exporter"]'
    assert "RUN" not in final, "the final stage has no shell to run anything with"
    labels = " ".join(args for word, args in stages()[-1] if word == "LABEL")
    for key in ("title", "description", "licenses", "version", "revision", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
