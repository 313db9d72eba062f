#!/usr/bin/env python3
"""Fail when an alert's runbook_url does not point at a section of docs/runbooks.md.

Every `- alert: Name` in the rule files must carry a `runbook_url:` annotation of the form
`.../docs/runbooks.md#<anchor>`, and `<anchor>` must be the GitHub anchor of a heading of
docs/runbooks.md (lowercased, punctuation other than `-` and `_` removed, spaces to `-`). The
convention that the anchor is the lowercased alert name is checked too, so that the two tiers of
one alert share one section and a renamed alert cannot keep pointing at its old section. Every
section of the runbook's summary table must link to an existing heading as well.

Standard library only (no PyYAML). Usage:
  scripts/check-runbook-anchors.py [--runbooks FILE] [RULE_FILE ...]
Defaults: docs/runbooks.md, alerts/*.rules.yml. Exit 0 when every anchor resolves, 1 when one
does not, 2 on a usage error.
"""

import argparse
import glob
import os
import re
import sys


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown):
    found = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m and not fenced:
            found.add(slug(m.group(2)))
    return found


def alerts(text):
    """(alert name, runbook_url or None, line number) for every alert rule."""
    out = []
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*-\s+(alert|record):\s*(\S+)", line)
        if m:
            if current:
                out.append(current)
            current = [m.group(2), None, number] if m.group(1) == "alert" else None
            continue
        m = re.match(r"^\s*runbook_url:\s*['\"]?([^'\"\s]+)", line)
        if m and current:
            current[1] = m.group(1)
    if current:
        out.append(current)
    return out


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runbooks", default=os.path.join(root, "docs", "runbooks.md"))
    parser.add_argument("rules", nargs="*")
    args = parser.parse_args()
    rule_files = args.rules or sorted(glob.glob(os.path.join(root, "alerts", "*.rules.yml")))
    if not rule_files:
        print("check-runbook-anchors: no rule files", file=sys.stderr)
        return 2
    try:
        with open(args.runbooks, encoding="utf-8") as f:
            runbooks = f.read()
    except OSError as e:
        print(f"check-runbook-anchors: {e}", file=sys.stderr)
        return 2
    known = anchors(runbooks)
    errors = []
    count = 0
    for path in rule_files:
        with open(path, encoding="utf-8") as f:
            rules = alerts(f.read())
        for name, url, line in rules:
            count += 1
            where = f"{path}:{line}: {name}"
            if not url:
                errors.append(f"{where}: no runbook_url annotation")
                continue
            m = re.search(r"docs/runbooks\.md#([^\s'\"]+)$", url)
            if not m:
                errors.append(f"{where}: runbook_url {url} does not point into docs/runbooks.md")
                continue
            anchor = m.group(1)
            if anchor not in known:
                errors.append(f"{where}: runbook_url anchor #{anchor} is no section of {args.runbooks}")
            elif anchor != name.lower():
                errors.append(f"{where}: runbook_url anchor #{anchor} is not the lowercased alert name #{name.lower()}")
    # The summary table's links, and every in-page link, must resolve too.
    for number, line in enumerate(runbooks.splitlines(), 1):
        for anchor in re.findall(r"\]\(#([^)\s]+)\)", line):
            if anchor not in known:
                errors.append(f"{args.runbooks}:{number}: link #{anchor} is no section")
    for e in errors:
        print(f"check-runbook-anchors: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"check-runbook-anchors: {count} alert(s), every runbook_url resolves to a section")
    return 0


if __name__ == "__main__":
    sys.exit(main())
