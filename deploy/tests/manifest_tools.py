#!/usr/bin/env python3
"""Helpers for scripts/test-deploy (need PyYAML).

  manifest_tools.py split RENDERED OUTDIR
      Split a `kubectl kustomize` output stream: core Kubernetes objects go to OUTDIR/core.yaml
      (for kubernetes-validate), each Prometheus Operator object to its own file
      OUTDIR/<kind>/<name>.yaml (check-jsonschema validates one document per file).
      Prints a one-line summary. Fails on an object of an unknown non-core API group.

  manifest_tools.py strict-schema IN OUT
      Copy a vendored CRD schema, adding `additionalProperties: false` to every object schema
      that lists `properties` and allows nothing else. The API server prunes unknown fields
      silently, and `kubectl apply` (server-side field validation, default Strict since 1.27)
      rejects them: a misspelt field (say `relabellings`) must fail here too.
      Also translates Go (RE2) patterns that JSON Schema's ECMA-262 regexes cannot express:
      a case-insensitive flag `(?i)` becomes explicit `[aA]` classes.
"""

from __future__ import annotations

import json
import pathlib
import sys

import yaml

CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
             ("monitoring.coreos.com/v1", "ServiceMonitor")}
CORE_GROUPS = {"v1", "apps/v1", "networking.k8s.io/v1", "policy/v1", "rbac.authorization.k8s.io/v1",
               "scheduling.k8s.io/v1"}


def split(rendered: str, outdir: str) -> None:
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    core, crds = [], []
    for doc in yaml.safe_load_all(pathlib.Path(rendered).read_text()):
        if doc is None:
            continue
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRD_KINDS:
            crds.append(doc)
            path = out / doc["kind"].lower() / f"{doc['metadata']['name']}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
        elif key[0] in CORE_GROUPS:
            core.append(doc)
        else:
            sys.exit(f"{rendered}: {key[1]} ({key[0]}) is neither core nor a vendored CRD kind")
    (out / "core.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))
    print(f"{len(core)} core objects, {len(crds)} Prometheus Operator objects")


def _ecma_pattern(pattern: str) -> str:
    """`^(?i)(abort|warn)?$` -> `^([aA][bB][oO][rR][tT]|[wW][aA][rR][nN])?$`."""
    if "(?i)" not in pattern:
        return pattern
    out, escaped, in_class = [], False, False
    for ch in pattern.replace("(?i)", ""):
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "]":
            in_class = False
            out.append(ch)
        elif ch.isascii() and ch.isalpha() and not in_class:
            out.append(f"[{ch.lower()}{ch.upper()}]")
        else:
            out.append(ch)
    return "".join(out)


def _strict(node):
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            node["pattern"] = _ecma_pattern(node["pattern"])
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


def strict_schema(src: str, dst: str) -> None:
    schema = _strict(json.loads(pathlib.Path(src).read_text()))
    pathlib.Path(dst).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "split":
        split(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "strict-schema":
        strict_schema(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
