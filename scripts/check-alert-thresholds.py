#!/usr/bin/env python3
"""Fail when a rule's threshold differs from alerts/thresholds.yml, the one source of thresholds.

The rule files stay plain Prometheus rules, written out by hand (as the mixins' rendered output
is); this check keeps them equal to the file that the dashboards and `imds_exporter check` read
too. THRESHOLDS below maps every rule that uses a threshold to its key and to the place in the
expression where the number stands (`{N}`). For each entry:
  - the place must be found in the rule's expression (whitespace is not significant), else the
    expression changed shape and the entry must follow;
  - the number there (a plain decimal, or a product such as `15 * 60`) must equal the key's value;
  - the key must exist in the file, and the rule in the rule files.
Every other comparison with a number, in every rule, must be with 0 or 1 (states, "any"): a rule
that compares with another number has a threshold that no key covers.

Standard library only, like scripts/check-alert-metrics.py, whose reader of `expr:` values it
shares. The values of alerts/thresholds.yml come from scripts/thresholds.py.

Usage: scripts/check-alert-thresholds.py [--thresholds FILE] [RULE_FILE ...]
Defaults: --thresholds alerts/thresholds.yml, rule files alerts/*.rules.yml. Exit 0 when every
threshold matches, 1 when one does not, 2 on a usage or parse error.
"""

import argparse
import importlib.util
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import thresholds  # noqa: E402

# (rule: alert name or recorded series, severity label (None: any/none), key, where the number is)
# `{N}` stands for the number; the rest is the expression's own text.
THRESHOLDS = [
    # alerts/imds_exporter.rules.yml
    ("instance:imds_request_duration_seconds_over_1s:ratio_rate5m", None,
     "slow_request_seconds", r'imds_request_duration_seconds_bucket{probe="imds", phase=~"token|role|credentials", le=~"{N}(\\.0)?"}'),
    ("ImdsRequestLatencyHigh", "warning",
     "slow_request_seconds", "instance:imds_request_duration_seconds_over_{N}s:ratio_rate5m"),
    ("ImdsRequestLatencyHigh", "warning",
     "slow_request_ratio", "_over_1s:ratio_rate5m > {N}"),
    ("ImdsHopLimitSuspected", "warning",
     "hop_limit_token_timeout_ratio", "instance:imds_token_timeouts_per_token_requests:ratio_rate5m > {N}"),
    ("ImdsHopLimitSuspected", "warning",
     "hop_limit_v1_answered_ratio", "instance:imds_v1_answers:ratio_rate5m > {N}"),
    ("ImdsCredentialsExpiring", "warning",
     "credentials_expiry_warning_seconds", "imds_credentials_expiration_timestamp_seconds - time() < {N}"),
    ("ImdsCredentialsExpiring", "critical",
     "credentials_expiry_critical_seconds", "imds_credentials_expiration_timestamp_seconds - time() < {N}"),
    ("ImdsCredentialsRotationLate", "warning",
     "credentials_rotation_lead_seconds", 'imds_credentials_rotation_lead_seconds{probe="imds"} < {N}'),
    ("ImdsProbeStale", "warning", "probe_stale_max_interval_seconds", "imds_probe_interval_seconds <= {N}"),
    ("ImdsWebIdentityTokenExpiring", "warning", "web_identity_token_expiry_warning_seconds",
     "imds_web_identity_token_expiration_timestamp_seconds - time() < {N}"),
    ("ImdsStsClockSkew", "critical", "clock_skew_critical_seconds", "imds_sts_clock_skew_seconds > {N}"),
    ("ImdsStsClockSkew", "critical", "clock_skew_critical_seconds", "imds_sts_clock_skew_seconds < -{N}"),
    ("ImdsClockSkewDetected", "warning", "clock_skew_warning_seconds", "imds_ntp_offset_seconds > {N}"),
    ("ImdsClockSkewDetected", "warning", "clock_skew_warning_seconds", "imds_ntp_offset_seconds < -{N}"),
    ("ImdsClockSkewDetected", "critical", "clock_skew_critical_seconds", "imds_ntp_offset_seconds > {N}"),
    ("ImdsClockSkewDetected", "critical", "clock_skew_critical_seconds", "imds_ntp_offset_seconds < -{N}"),
    ("ImdsClockNotSynchronising", "warning",
     "kernel_clock_max_error_seconds", "imds_clock_max_error_seconds >= {N}"),
    # alerts/imds_exporter_pod_network.rules.yml: its own [10m] ratio, the same cut.
    ("ImdsPodNetworkTokenTimeout", "warning", "hop_limit_token_timeout_ratio", ") > {N} and on (instance)"),
    ("ImdsCredentialsDelayed", "warning", "sdk_wait_warning_seconds", "imds_sdk_credentials_wait_seconds > {N}"),
]

# Numbers a comparison may use without a key: 0 and 1 are states and "any", not thresholds.
STRUCTURAL = (0, 1)

NUMBER = r"[0-9]+(?:\.[0-9]+)?(?: ?\* ?[0-9]+(?:\.[0-9]+)?)*"
COMPARISON_RE = re.compile(r"(?P<op>==|!=|>=|<=|>|<) ?(?:bool )?(?P<n>-? ?" + NUMBER + r")(?![0-9.A-Za-z_:(])")
RULE_RE = re.compile(r"^\s*-\s+(?P<kind>alert|record):\s*['\"]?(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)['\"]?\s*$")
GROUP_RE = re.compile(r"^\s*-\s+name:")
SEVERITY_RE = re.compile(r"^\s+severity:\s*['\"]?(?P<severity>\w+)")


def shared_expr_reader():
    """extract() of scripts/check-alert-metrics.py: both checks read `expr:` values alike."""
    spec = importlib.util.spec_from_file_location("check_alert_metrics", HERE / "check-alert-metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.extract


def value_of(text):
    """The number a `{N}` matched: a decimal or a product of decimals (`15 * 60`)."""
    product = 1
    for factor in text.replace(" ", "").lstrip("-").split("*"):
        product *= float(factor)
    return -product if text.lstrip().startswith("-") else product


def normalise(expr):
    """One space for every run of whitespace, none inside parentheses' edges: `( a )` and `(a)` alike."""
    text = re.sub(r"\s+", " ", expr)
    return re.sub(r"([(\[{]) | ([)\]}])", lambda m: m.group(1) or m.group(2), text)


def masked(expr):
    """`expr` with the contents of string literals blanked (same length), so that numbers in label
    matchers (`le=~"1"`) are not read as comparisons and positions stay those of `expr`."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: '"' + "_" * (len(m.group(0)) - 2) + '"', expr)


def snippet_re(snippet):
    before, sep, after = snippet.partition("{N}")
    if not sep or "{N}" in after:
        raise ValueError(f"THRESHOLDS: {snippet!r} must contain {{N}} exactly once")
    return re.compile(re.escape(normalise(before)) + f"(?P<n>{NUMBER})" + re.escape(normalise(after)))


def read_rules(path, extract):
    """[(name, severity or None, line number, expression)] of every rule in a rule file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    starts = [(i, RULE_RE.match(line)) for i, line in enumerate(lines)]
    starts = [(i, m.group("name")) for i, m in starts if m]
    exprs = {lineno: text for lineno, kind, text in extract(path) if kind == "expr"}
    rules = []
    for n, (start, name) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        end = next((i for i in range(start + 1, end) if GROUP_RE.match(lines[i])), end)
        severity = next((m.group("severity") for m in map(SEVERITY_RE.match, lines[start:end]) if m), None)
        expr = [(ln, text) for ln, text in exprs.items() if start < ln <= end]
        if len(expr) != 1:
            raise ValueError(f"{path}:{start + 1}: rule {name} has {len(expr)} expr values")
        rules.append((name, severity, expr[0][0], expr[0][1]))
    return rules


def shown(path):
    a = os.path.abspath(path)
    return os.path.relpath(a, REPO) if a.startswith(str(REPO) + os.sep) else str(path)


def describe(name, severity):
    return f'{name}{{severity="{severity}"}}' if severity else name


def fmt(value):
    return f"{value:g}"


def check(rule_files, values, values_file):
    """Error messages; empty when every rule agrees with the thresholds."""
    errors = []
    extract = shared_expr_reader()
    seen = set()
    for path in rule_files:
        for name, severity, lineno, expr in read_rules(path, extract):
            where = f"{shown(path)}:{lineno}: {describe(name, severity)}"
            text = normalise(expr)
            entries = [e for e in THRESHOLDS if e[0] == name and e[1] in (None, severity)]
            covered = []  # spans of numbers that a key explains
            for rule, sev, key, snippet in entries:
                seen.add((rule, sev, key, snippet))
                if key not in values:
                    errors.append(f"{where}: mapped to key {key}, which {values_file} does not have")
                    continue
                want = values[key]
                matches = list(snippet_re(snippet).finditer(text))
                if not matches:
                    errors.append(f"{where}: no `{snippet.replace('{N}', fmt(want))}` in the expression, but it "
                                  f"should use {key} ({fmt(want)} in {values_file}); if the expression changed "
                                  f"shape, update THRESHOLDS in scripts/check-alert-thresholds.py")
                    continue
                for m in matches:
                    covered.append(m.span("n"))
                    got = value_of(m.group("n"))
                    if abs(got - want) > 1e-12 * max(1.0, abs(want)):
                        errors.append(f"{where}: `{m.group(0)}` uses {fmt(got)}, but {key} is {fmt(want)} "
                                      f"in {values_file}")
            for m in COMPARISON_RE.finditer(masked(text)):
                start = m.start("n")
                if any(a <= start < b or a <= m.end("n") - 1 < b for a, b in covered):
                    continue
                got = value_of(m.group("n"))
                if got in STRUCTURAL:
                    continue
                errors.append(f"{where}: `{m.group(0).strip()}` compares with {fmt(got)}, which no key of "
                              f"{values_file} covers: add the threshold there and map the rule in THRESHOLDS "
                              f"of scripts/check-alert-thresholds.py")
    for entry in THRESHOLDS:
        if entry not in seen:
            rule, sev, key, _ = entry
            errors.append(f"scripts/check-alert-thresholds.py: THRESHOLDS maps {describe(rule, sev)} to {key}, "
                          f"but no rule file given has that rule")
    return errors


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--thresholds", default=str(thresholds.THRESHOLDS_FILE))
    ap.add_argument("rule_files", nargs="*")
    args = ap.parse_args(argv)

    rule_files = args.rule_files or sorted(str(p) for p in (REPO / "alerts").glob("*.rules.yml"))
    if not rule_files:
        print("check-alert-thresholds: no rule files found", file=sys.stderr)
        return 2
    values_file = shown(args.thresholds)
    try:
        values = thresholds.load(args.thresholds)
        errors = check(rule_files, values, values_file)
    except (OSError, ValueError) as e:
        print(f"check-alert-thresholds: {e}", file=sys.stderr)
        return 2
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        print(f"check-alert-thresholds: {len(errors)} problem(s) with the thresholds of {values_file}", file=sys.stderr)
        return 1
    used = {key for _, _, key, _ in THRESHOLDS}
    unused = [k for k in values if k not in used]
    print(f"check-alert-thresholds: {len(THRESHOLDS)} threshold uses in {len({(r, s) for r, s, _, _ in THRESHOLDS})} "
          f"rules of {len(rule_files)} rule file(s) equal {values_file}; every other comparison is with 0 or 1"
          + (f" (keys no rule uses: {', '.join(unused)})" if unused else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
