#!/usr/bin/env python3
"""Refresh a vendored schema from an upstream Prometheus Operator CRD (needs PyYAML).

  python3 deploy/schemas/extract.py monitoring.coreos.com_podmonitors.yaml > deploy/schemas/podmonitor_v1.json

Takes `spec.versions[name=v1].schema.openAPIV3Schema`, removes every `description` except the
top-level one's first paragraph (the vendored files are for validation, not for reading), and
writes sorted, indented JSON: the same form as the committed files. See README.md here.
"""

import json
import sys

import yaml


def strip(node, top=False):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                if top:
                    out[key] = value.split("\n", 1)[0]
                continue
            # `description` can also be a property name (it is not, in these CRDs, but be exact).
            if key == "properties":
                out[key] = {name: strip(sub) for name, sub in value.items()}
            else:
                out[key] = strip(value)
        return out
    if isinstance(node, list):
        return [strip(item) for item in node]
    return node


def main(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    crd = next(d for d in docs if d.get("kind") == "CustomResourceDefinition")
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = strip(version["schema"]["openAPIV3Schema"], top=True)
    json.dump(schema, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
