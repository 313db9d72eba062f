#!/usr/bin/env python3
"""Fail when an alert or recording rule uses an imds_* metric the exporter does not expose.

Every `expr:` in the rule files is read (plain, quoted and block scalars, `|` and `>`), PromQL
comments and string literals are removed, and every identifier starting with `imds_` is looked up
in the golden exposition list (`tests/fixtures/metrics.golden`: one family per line,
`name type HELP...`). Series suffixes are mapped to their family only where the family's type
allows it (`_bucket`/`_count`/`_sum` of a histogram or summary, `_total` of a counter, `_info` of
an info family), so a rename in the exporter cannot silently turn an alert into a query that
never matches. Recording-rule names (`level:metric:operation`, they contain `:`) are skipped;
their own expressions are checked instead.

Label matchers are checked too, against `tests/fixtures/metrics.labels` (one family per line,
`name label=v1|v2 other=*`, written by tests/golden.rs): a matcher on a label the family does not
have (other than the target labels Prometheus adds, TARGET_LABELS) is an error, and so is an `=`
or `=~` matcher on a closed-set label (`phase`, `reason`, `probe`, `allowance`) that matches none
of its values. So renaming a label or a reason value breaks this check, not an alert.

Standard library only (no PyYAML), so it runs anywhere python3 does.

Usage: scripts/check-alert-metrics.py [--golden FILE] [--labels FILE] [RULE_FILE ...]
Defaults: --golden tests/fixtures/metrics.golden, --labels tests/fixtures/metrics.labels, rule
files alerts/*.rules.yml (relative to the repository root). Exit 0 when every name is known, 1 when one is not, 2 on a usage error.
"""

import argparse
import glob
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (suffix, family types that produce it)
SUFFIXES = (
    ("_bucket", {"histogram"}),
    ("_count", {"histogram", "summary"}),
    ("_sum", {"histogram", "summary"}),
    ("_created", {"counter", "histogram", "summary"}),
    ("_total", {"counter"}),
    ("_info", {"info"}),
)

# Labels a scrape adds to every series (the target's, and the bundled scrape configs' relabelling).
TARGET_LABELS = {"job", "instance", "view", "namespace", "pod", "node", "container"}

SELECTOR_RE = re.compile(r"(?P<name>imds_[A-Za-z0-9_]*)\s*\{(?P<matchers>[^}]*)\}")
MATCHER_RE = re.compile(r'\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?')

KEY_RE = re.compile(r"^(?P<indent>\s*)(?:-\s+)?(?P<key>expr|record)\s*:(?P<rest>.*)$")
IDENT_RE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def load_golden(path):
    """Map family name -> type from the golden file."""
    families = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 2:
                raise ValueError(f"{path}:{lineno}: expected 'name type HELP', got {line!r}")
            families[parts[0]] = parts[1].lower()
    return families


def load_labels(path):
    """Map family name -> {label: set of values, or None for an open label}."""
    families = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            labels = {}
            for part in parts[1:]:
                label, sep, values = part.partition("=")
                if not sep:
                    raise ValueError(f"{path}:{lineno}: expected label=values, got {part!r}")
                labels[label] = None if values == "*" else set(values.split("|"))
            families[parts[0]] = labels
    return families


def family_of(name, families):
    """The family a series name belongs to (`_bucket` of a histogram, ...), or None."""
    if name in families:
        return name
    for suffix, _ in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return None


def check_matchers(expr, families, labels):
    """Reasons why the label matchers of imds_* selectors in `expr` cannot match."""
    problems = []
    for sel in SELECTOR_RE.finditer(expr):
        name = sel.group("name")
        family = family_of(name, families)
        if family is None or family not in labels:
            continue  # an unknown name is reported by resolve()
        have = labels[family]
        for m in MATCHER_RE.finditer(sel.group("matchers")):
            label, op, value = m.group("label"), m.group("op"), m.group("value")
            if label == "le":
                if not name.endswith("_bucket"):
                    problems.append(f"{name}: `le` exists only on _bucket series")
                continue
            if label not in have:
                if label not in TARGET_LABELS:
                    problems.append(f"{name}: family {family} has no label {label!r}")
                continue
            values = have[label]
            if values is None or op in ("!=", "!~"):
                continue
            if op == "=":
                ok = value in values
            else:
                pattern = re.compile(value.replace("\\\\", "\\"))
                ok = any(pattern.fullmatch(v) for v in values)
            if not ok:
                problems.append(
                    f"{name}{{{label}{op}\"{value}\"}}: no such {label} (the exporter has: {', '.join(sorted(values))})"
                )
    return problems


def strip_yaml_comment(text):
    """Drop a trailing ` # comment` from a plain YAML scalar (outside quotes)."""
    quote = None
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i]
    return text


def unquote(value, lines, i, key_col):
    """Read a quoted YAML scalar starting in `value`, continuing on later lines if needed."""
    q = value[0]
    buf = value[1:]
    j = i
    while True:
        if q == "'":
            k = 0
            while True:
                k = buf.find("'", k)
                if k < 0:
                    break
                if buf[k + 1 : k + 2] == "'":
                    k += 2
                    continue
                return buf[:k].replace("''", "'"), j
        else:
            k = 0
            while True:
                k = buf.find('"', k)
                if k < 0:
                    break
                if k > 0 and buf[k - 1] == "\\":
                    k += 1
                    continue
                return bytes(buf[:k], "utf-8").decode("unicode_escape"), j
        j += 1
        if j >= len(lines):
            raise ValueError(f"unterminated quoted scalar starting on line {i + 1}")
        buf += " " + lines[j].strip()


def extract(path):
    """Return [(line_number, kind, text)] for every expr/record value in a rule file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = KEY_RE.match(lines[i])
        if not m:
            i += 1
            continue
        key = m.group("key")
        key_col = lines[i].index(key)
        rest = m.group("rest").strip()
        start = i
        if rest[:1] in ("|", ">"):
            # Block scalar: every following line indented deeper than the key (or blank).
            body = []
            j = i + 1
            while j < len(lines):
                ln = lines[j]
                if ln.strip() and (len(ln) - len(ln.lstrip())) <= key_col:
                    break
                body.append(ln)
                j += 1
            text = "\n".join(body)
            i = j
        elif rest[:1] in ("'", '"'):
            text, j = unquote(rest, lines, i, key_col)
            i = j + 1
        else:
            # Plain scalar, possibly folded over more-indented continuation lines.
            parts = [strip_yaml_comment(rest)]
            j = i + 1
            while j < len(lines):
                ln = lines[j]
                if not ln.strip():
                    break
                if (len(ln) - len(ln.lstrip())) <= key_col:
                    break
                parts.append(strip_yaml_comment(ln.strip()))
                j += 1
            text = " ".join(p.strip() for p in parts)
            i = j
        out.append((start + 1, key, text))
    return out


def promql_identifiers(expr):
    """Identifiers in a PromQL expression, with string literals and comments removed."""
    cleaned = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            cleaned.append(" ")
            i = j + 1
        elif c == "#":
            while i < n and expr[i] != "\n":
                i += 1
        else:
            cleaned.append(c)
            i += 1
    text = "".join(cleaned)
    # Durations like [5m] and numbers cannot start an identifier; label names inside {...}
    # (e.g. `phase`) never start with imds_, so no further parsing is needed.
    return IDENT_RE.findall(text)


def resolve(name, families):
    """Return None if `name` is exposed, else a reason string."""
    if name in families:
        return None
    for suffix, types in SUFFIXES:
        if name.endswith(suffix):
            family = name[: -len(suffix)]
            if family in families:
                if families[family] in types:
                    return None
                return f"family {family} is a {families[family]}, which has no {suffix} series"
    return "not in the golden exposition"


def shown(path):
    """A path relative to the repository when it is inside it, else as given."""
    a = os.path.abspath(path)
    return os.path.relpath(a, REPO) if a.startswith(REPO + os.sep) else path


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--golden", default=os.path.join(REPO, "tests/fixtures/metrics.golden"))
    ap.add_argument("--labels", default=os.path.join(REPO, "tests/fixtures/metrics.labels"))
    ap.add_argument("--list", action="store_true", help="print every checked name")
    ap.add_argument("rule_files", nargs="*")
    args = ap.parse_args(argv)

    rule_files = args.rule_files or sorted(glob.glob(os.path.join(REPO, "alerts/*.rules.yml")))
    if not rule_files:
        print("check-alert-metrics: no rule files found", file=sys.stderr)
        return 2
    if not os.path.exists(args.golden):
        print(f"check-alert-metrics: golden file {args.golden} does not exist", file=sys.stderr)
        return 2
    try:
        families = load_golden(args.golden)
        labels = load_labels(args.labels)
    except (OSError, ValueError) as e:
        print(f"check-alert-metrics: {e}", file=sys.stderr)
        return 2

    errors = 0
    checked = set()
    for path in rule_files:
        try:
            entries = extract(path)
        except (OSError, ValueError) as e:
            print(f"check-alert-metrics: {path}: {e}", file=sys.stderr)
            return 2
        exprs = [e for e in entries if e[1] == "expr"]
        if not exprs:
            print(f"check-alert-metrics: {path}: no expr found", file=sys.stderr)
            return 2
        for lineno, _, expr in exprs:
            for ident in promql_identifiers(expr):
                if ":" in ident or not ident.startswith("imds_"):
                    continue
                checked.add(ident)
                reason = resolve(ident, families)
                if reason:
                    errors += 1
                    print(f"{shown(path)}:{lineno}: {ident}: {reason}", file=sys.stderr)
            for problem in check_matchers(expr, families, labels):
                errors += 1
                print(f"{shown(path)}:{lineno}: {problem}", file=sys.stderr)

    rel_golden = shown(args.golden)
    if args.list:
        for name in sorted(checked):
            print(name)
    if errors:
        print(f"check-alert-metrics: {errors} unknown metric or label use(s); golden: {rel_golden}, {shown(args.labels)}", file=sys.stderr)
        return 1
    print(f"check-alert-metrics: {len(checked)} imds_* metric names in {len(rule_files)} rule file(s) all exposed, with every label matcher satisfiable ({rel_golden}, {shown(args.labels)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
