#!/usr/bin/env python3
"""End-to-end: the simulator, the exporter and a real Prometheus; the dashboards and alerts on top.

Run through scripts/test-e2e (which builds the binary, installs Prometheus when missing and kills
every process in its trap). Python 3 standard library only.

What it proves, in order (each line of output is one check; the last line is the summary):
 1. static: the dashboards are what scripts/gen-dashboards generates, follow the conventions
    (datasource variable, `${datasource}` everywhere, units, descriptions, `$__rate_interval`,
    `$__range` only in instant queries, schemaVersion 39, stable uids, no `__inputs`), and
    empty-when-healthy.json names real panels;
 2. a fleet of ten fake nodes (simulator + exporter each, every probe at 1 s, the outage watch at
    its default 1.5 s; one exporter with `--imds.sdk python,javascript`, the others with the
    default four families) scraped by Prometheus every second, with copies of alerts/*.rules.yml
    whose `for:` are shortened to 5s; every rule evaluates without error (the recording rules
    among them: some panels read their series, so the panel checks below prove those series exist
    with the labels the panels select);
 3. healthy state: every query of every panel, template variable and annotation of both
    dashboards succeeds, as an instant query and, for graph panels (timeseries, heatmap,
    state-timeline) and annotations, also as a range query over the last 2 minutes; each returns
    data unless dashboards/empty-when-healthy.json lists it (the rotation-lead panels are listed,
    but the test waits for a first rotation, so they must have data) or, where adjtimex(2) is not
    readable, it asks for the kernel clock values that the exporter then leaves out;
    the healthy node also runs the container, web identity and STS probes (container endpoint
    and STS stand-in of its simulator, a token file and a JWT valid for a day): each succeeds,
    its simulator counted container and STS requests, and the nodes without those flags have no
    series of those probes and their simulators counted none;
    no warning or critical alert is pending or firing, with one honest exception: the kernel
    clock of the machines that build this project is not synchronised (docs/clock.md),
    so ImdsClockNotSynchronising must fire exactly when the kernel, asked by this test itself
    through adjtimex(2), says so;
 4. failure scenarios, one per node, switched through the simulator's control API at the same
    time: each node's expected alerts (by name in alerts/imds_exporter.rules.yml, severity and,
    for the per-SDK alerts, the `sdk` label) reach `firing` within DEADLINE seconds:
      outage             ImdsCredentialsUnavailable for each of the four families (critical);
      throttle, slow     ImdsThrottled, ImdsRequestLatencyHigh;
      hop-limit          ImdsHopLimitSuspected, ImdsCredentialsUnavailable for sdk=rust (the one
                         family without an IMDSv1 fallback), ImdsCredentialsDelayed for python,
                         javascript and go; the page's description, as Prometheus renders it
                         (/api/v1/alerts), names python, javascript and go as only waiting;
      hop-limit, with --imds.sdk python,javascript
                         ImdsCredentialsDelayed for python and javascript (~1 s late), and no
                         critical alert pending or firing during the whole run;
      hop-limit-v2-only  ImdsCredentialsUnavailable for each family (IMDSv1 off: nobody falls
                         back), each description naming no family as only waiting;
      expired, clock     ImdsCredentialsExpiring, ImdsClockSkewDetected (critical);
      container refused  (the exporter's container probe at the node simulator's /v1/credentials,
                         the Pod Identity agent down: nothing listens) ImdsContainerCredentialsUnavailable;
      STS ExpiredToken   (--sts.enabled at the simulator's STS stand-in, answering ExpiredToken)
                         ImdsStsCredentialsRejected;
    then a blip on one more node (outage for 3 s, then healthy): its outage watch counts one window
    of about 3 s and ImdsCredentialsOutage (warning) fires; whether ImdsCredentialsUnavailable went
    pending meanwhile is reported, not judged (its 3m `for:` is 5 s here, shorter than the blip).
    Meanwhile the dashboards show the failures: the fleet's stats (per SDK family: nodes without
    credentials, nodes waiting over 1 s; outages in the range), the hop-limit node's SDK row
    (rust FAILING, the others OK after ~1 s, go ~3.5 s), the Worst nodes table, and the panels empty
    when healthy have data (the "Failed ... by reason" panels of the fleet and of the node in an
    outage, the outage panels of the fleet and of the blip node);
    then every node is switched back to healthy and the alerts that follow the current state
    resolve (ImdsCredentialsOutage then fires where a failure ended, which is reported). One node
    per scenario keeps the 5-minute rate windows of one scenario from leaking into the next; the
    healthy node must stay free of alerts throughout, and ImdsCredentialsUnavailable on the
    hop-limit node only for rust.

Why `--lifetime 1h` and not a short lifetime: with credentials that live 2 minutes, the healthy
state itself is "expiring" (< 15 min left) and every rotation is "late" (< 5 min of lead), and
the alerts would be right to fire. Rotations every 20 s still exercise the rotation panels.
"""

import argparse
import ctypes
import ctypes.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, PromError, Stack, dashboard_values, wait_for  # noqa: E402
from stack import substitute as interpolate  # noqa: E402

RATE_INTERVAL = "30s"  # >= 4 scrape intervals of 1 s, as Grafana's $__rate_interval would be
RANGE = "5m"
# Graph panels (and annotations) are range queries in Grafana: run them as such over this window.
RANGE_WINDOW, RANGE_STEP = 120, 5
RANGED_PANELS = ("timeseries", "heatmap", "state-timeline")
DEADLINE = 90  # seconds for an alert to fire
HEALTHY = "e2e-healthy"
# The phases the latency panels show (the full bucket set; scripts/gen-dashboards SDK_PATH_PHASES).
PHASES = ["token", "role", "credentials"]
KERNEL_CLOCK_ALERT = "ImdsClockNotSynchronising"
# Listed as empty when healthy (the probes are optional), but the healthy node runs them: required,
# except the container rotation lead (absent until the container endpoint's first rotation).
BEYOND_ROW = "Container, web identity and STS"
BEYOND_OPTIONAL = re.compile(r"\bimds_credentials_rotation_lead_seconds\b")
# Listed as empty when healthy only until the first rotation, which the test waits for: then required.
ROTATION_PANELS = {("imds-node", "Last rotation lead"), ("imds-node", "Rotation lead")}
# What the exporter stops exporting when adjtimex(2) is not permitted (it keeps imds_clock_kernel_readable 0).
KERNEL_CLOCK_METRICS = re.compile(r"\bimds_clock_(synchronized|max_error_seconds|estimated_error_seconds)\b")
# The node whose node dashboard must show failures during the scenarios.
FAILING_NODE = "e2e-outage"
SDKS = ("python", "javascript", "rust", "go")  # the exporter's default --imds.sdk

# An alert a scenario must bring to `firing`: its name, severity, `sdk` label (None: the alert has
# none) and whether its expression follows the current state (then it must resolve soon after
# healthy returns) or a 5-minute window (it would take 5 minutes: not waited for).
UNAVAILABLE, DELAYED, OUTAGE = "ImdsCredentialsUnavailable", "ImdsCredentialsDelayed", "ImdsCredentialsOutage"


def expect(alert, severity, sdk=None, follows_state=True):
    return (alert, severity, sdk, follows_state)


# The probes beyond IMDS, pointed at the node's simulator ({sim}: its URL; {workdir}: the fleet's
# directory, where main() writes the two token files). Loopback only, like everything here.
CONTAINER_FLAGS = ["--container.endpoint", "{sim}/v1/credentials", "--container.token-file", "{workdir}/container-token",
                   "--container.interval", "1s"]
WEB_IDENTITY_FLAGS = ["--web-identity.token-file", "{workdir}/web-identity-token",
                      "--web-identity.role-arn", "arn:aws:iam::123456789012:role/e2e-irsa", "--web-identity.interval", "1s"]
STS_FLAGS = ["--sts.enabled", "--sts.endpoint", "{sim}/_sts", "--sts.region", "us-east-1", "--sts.interval", "2s"]
BEYOND_PROBES = ("container", "web_identity", "sts")
# The simulator's default --container-token: what the agent expects in the Authorization header.
CONTAINER_TOKEN = "simulated-pod-identity-token"

# node name -> (how to break it, its argument, the alerts that must fire, the node's extra exporter flags)
SCENARIOS = {
    "e2e-outage": ("scenario", "outage", [expect(UNAVAILABLE, "critical", sdk) for sdk in SDKS], []),
    "e2e-throttle": ("scenario", "throttle", [expect("ImdsThrottled", "warning", follows_state=False)], []),
    "e2e-slow": ("scenario", "slow?delay=1500ms", [expect("ImdsRequestLatencyHigh", "warning", follows_state=False)], []),
    # Default families: only rust (no IMDSv1 fallback) pages; the others fall back and wait.
    "e2e-hop-limit": ("scenario", "hop-limit", [
        expect("ImdsHopLimitSuspected", "warning", follows_state=False),
        expect(UNAVAILABLE, "critical", "rust"),
        *(expect(DELAYED, "warning", sdk) for sdk in ("python", "javascript", "go"))], []),
    # A fleet without Rust or Go workloads: the hop limit is a warning, never a page.
    "e2e-hop-limit-py-js": ("scenario", "hop-limit", [expect(DELAYED, "warning", sdk) for sdk in ("python", "javascript")],
                            ["--imds.sdk", "python,javascript"]),
    # IMDSv1 off: nobody falls back, every family pages.
    "e2e-hop-limit-v2-only": ("scenario", "hop-limit-v2-only", [expect(UNAVAILABLE, "critical", sdk) for sdk in SDKS], []),
    "e2e-expired": ("scenario", "expired", [expect("ImdsCredentialsExpiring", "critical")], []),
    "e2e-clock-offset": ("clock", "400", [expect("ImdsClockSkewDetected", "critical")], []),
    # The Pod Identity agent down (nothing listens: `refused`) while IMDS stays healthy.
    "e2e-container-down": ("container", "refused", [expect("ImdsContainerCredentialsUnavailable", "critical")],
                           CONTAINER_FLAGS),
    # STS refuses the IMDS credentials: ExpiredToken.
    "e2e-sts-expired": ("sts", "ExpiredToken", [expect("ImdsStsCredentialsRejected", "critical")], STS_FLAGS),
}
# The nodes whose failure is beyond IMDS: the IMDS panels (Worst nodes) do not count them.
BEYOND_NODES = {n for n, (kind, _, _, _) in SCENARIOS.items() if kind in ("container", "sts")}
# Which nodes run which of the probes beyond IMDS.
BEYOND_NODE_FLAGS = {HEALTHY: CONTAINER_FLAGS + WEB_IDENTITY_FLAGS + STS_FLAGS}
# The families whose ImdsCredentialsUnavailable may ever be pending or firing on a node (whole run).
ONLY_UNAVAILABLE = {"e2e-hop-limit": {"rust"}, "e2e-hop-limit-py-js": set()}
# Nodes on which no critical alert may ever be pending or firing (whole run).
NEVER_CRITICAL = ("e2e-hop-limit-py-js",)
# The families ImdsCredentialsUnavailable's description must name as "only waiting", per node.
WAITING_NAMED = {"e2e-hop-limit": {"python", "javascript", "go"}, "e2e-hop-limit-v2-only": set()}

# A blip: healthy, then `outage` for BLIP_SECONDS, then healthy again, once the scenarios above fire.
# The exporter's outage watch (its default --imds.outage-check-interval, 1.5 s; botocore's family,
# python, is among the node's default families) must count it, and ImdsCredentialsOutage fire.
BLIP_NODE = "e2e-blip"
BLIP_SECONDS = 3
BLIP_DEADLINE = 30

# What the fleet dashboard must show while the scenarios run: panel title -> (test, wording).
FLEET_UNDER_FAILURE = {
    "Nodes failing credentials": (lambda v: v >= 6, ">= 6 (outage, throttle, slow, the three hop-limit nodes)"),
    "Worst time to expiry": (lambda v: v < 0, "< 0 (the expired node)"),
    "Worst clock offset": (lambda v: v >= 300, ">= 300 s (400 s injected)"),
    "Throttled IMDS requests": (lambda v: v > 0, "> 0"),
    "Hop-limit signature nodes": (lambda v: v == 3, "3 (the three hop-limit nodes; outage and slow are not the hop limit)"),
    "IMDS outages in the range": (lambda v: v >= 1, ">= 1 (the blip)"),
}
# The same for the panels with one value per SDK family: title -> {sdk: (test, wording)}.
FLEET_BY_SDK = {
    "Nodes without credentials, by SDK family": {
        "rust": (lambda v: v >= 3, ">= 3 (outage, hop-limit, hop-limit-v2-only; throttle and slow too)"),
        "python": (lambda v: v >= 2, ">= 2 (outage, hop-limit-v2-only; throttle and slow too)"),
        "javascript": (lambda v: v >= 2, ">= 2 (outage, hop-limit-v2-only; throttle and slow too)"),
        "go": (lambda v: v >= 2, ">= 2 (outage, hop-limit-v2-only; throttle and slow too)"),
    },
    "Nodes waiting over 1 s, by SDK family": {
        "python": (lambda v: v >= 2, ">= 2 (hop-limit, hop-limit-py-js)"),
        "javascript": (lambda v: v >= 2, ">= 2 (hop-limit, hop-limit-py-js)"),
        "go": (lambda v: v >= 1, ">= 1 (hop-limit)"),
        "rust": (lambda v: v == 0, "0 (rust never falls back: it gets none, it does not wait)"),
    },
}
# What the node dashboard must show: (node, panel title) -> {sdk: (test, wording)}.
NODE_BY_SDK = {
    ("e2e-hop-limit", "New clients get credentials, by SDK family"): {
        "python": (lambda v: v == 1, "1 (OK, through IMDSv1)"), "javascript": (lambda v: v == 1, "1 (OK, through IMDSv1)"),
        "go": (lambda v: v == 1, "1 (OK, through IMDSv1)"), "rust": (lambda v: v == 0, "0 (FAILING)")},
    ("e2e-hop-limit", "Credential wait by SDK family"): {
        # docs/sdk-model.md: a 1 s token timeout for botocore and JS v3, 3 x 0.5 s + 2 x 1 s for Go v2.
        "python": (lambda v: 1 < v < 2.5, "1 s < wait < 2.5 s (~1 s)"),
        "javascript": (lambda v: 1 < v < 2.5, "1 s < wait < 2.5 s (~1 s)"),
        "go": (lambda v: 3 < v < 5, "3 s < wait < 5 s (~3.5 s)")},
}


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {name}" + (f"  ({detail})" if detail else ""), flush=True)
        else:
            self.failed += 1
            self.failures.append(name)
            print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok


def info(message):
    print(f"     {message}", flush=True)


# ------------------------------------------------------------------------------ kernel clock
class Timex(ctypes.Structure):
    # struct timex (linux/timex.h): the fields up to `status`, then room for the rest.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("_rest", ctypes.c_byte * 256)]


def read_kernel_clock():
    """(readable?, unsynchronised?, description) from adjtimex(2) with modes 0 (a read; changes nothing)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    tx = Timex()
    state = libc.adjtimex(ctypes.byref(tx))
    if state < 0:
        return (False, False,
                f"adjtimex not readable (errno {ctypes.get_errno()}): the exporter reports imds_clock_kernel_readable 0")
    sta_unsync = 0x0040
    time_error = 5
    unsync = state == time_error or bool(tx.status & sta_unsync)
    maxerror_s = tx.maxerror / 1e6
    return True, unsync and maxerror_s >= 16, f"adjtimex state {state}, status {tx.status:#x}, maxerror {maxerror_s:g}s"


def kernel_clock_unsynchronised():
    """(unsynchronised?, description); an unreadable kernel clock counts as not unsynchronised."""
    _, unsync, detail = read_kernel_clock()
    return unsync, detail


# -------------------------------------------------------------------------------- dashboards
BEYOND_PANELS = set()  # (uid, title) of the panels in the node dashboard's BEYOND_ROW, from load_dashboards()


def load_dashboards():
    boards = {}
    for name in ("imds-fleet", "imds-node"):
        boards[name] = json.loads((ROOT / "dashboards" / f"{name}.json").read_text())
    for row in boards["imds-node"]["panels"]:
        if row["type"] == "row" and row["title"] == BEYOND_ROW:
            BEYOND_PANELS.update(("imds-node", p["title"]) for p in row.get("panels", []))
    empty = json.loads((ROOT / "dashboards" / "empty-when-healthy.json").read_text())
    return boards, {(e["dashboard"], e["panel"]) for e in empty["panels"]}


def panels_of(board):
    for p in board["panels"]:
        if p["type"] == "row":
            yield from p.get("panels", [])  # collapsed rows keep their panels inside
        else:
            yield p


def queries_of(board):
    """(kind, title, refId, expr, ranged) of every panel target, template variable and annotation;
    `ranged`: Grafana runs it as a range query (graph panels' range targets, annotations)."""
    for p in panels_of(board):
        for target in p.get("targets", []):
            ranged = p["type"] in RANGED_PANELS and target.get("range", True) and not target.get("instant")
            yield "panel", p["title"], target.get("refId", ""), target["expr"], ranged
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]
            yield "variable", var["name"], "", q["query"] if isinstance(q, dict) else q, False
    for a in board.get("annotations", {}).get("list", []):
        if "expr" in a:
            yield "annotation", f"annotation: {a['name']}", "", a["expr"], True


def substitute(expr, instance):
    """The expression Grafana would send for job=imds, the given instance (".*": All), every other
    variable at All and a 30 s rate interval (the interpolation is shared with scripts/render_dashboards.py)."""
    return interpolate(expr, dashboard_values(instance, rate_interval=RATE_INTERVAL, interval="15s", range_=RANGE))


def static_checks(results, boards, empty):
    gen = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-dashboards"), "--check"],
                         capture_output=True, text=True)
    results.check("static: dashboards match scripts/gen-dashboards", gen.returncode == 0,
                  (gen.stderr or gen.stdout).strip())
    ds = {"type": "prometheus", "uid": "${datasource}"}
    for uid, board in boards.items():
        problems = []
        if board.get("uid") != uid:
            problems.append(f"uid {board.get('uid')!r}")
        if board.get("schemaVersion") != 39:
            problems.append(f"schemaVersion {board.get('schemaVersion')}")
        if "__inputs" in board or "__requires" in board:
            problems.append("__inputs/__requires present")
        variables = {v["name"]: v for v in board["templating"]["list"]}
        dsvar = variables.get("datasource", {})
        if dsvar.get("type") != "datasource" or dsvar.get("query") != "prometheus":
            problems.append("no `datasource` variable of type prometheus")
        for name in ("job", "instance"):
            if variables.get(name, {}).get("datasource") != ds:
                problems.append(f"variable {name} missing or not on ${{datasource}}")
        inst = variables.get("instance", {})
        want_multi = uid == "imds-fleet"
        if bool(inst.get("multi")) != want_multi or bool(inst.get("includeAll")) != want_multi:
            problems.append(f"instance variable multi/includeAll should be {want_multi}")
        if not any(p["type"] == "row" for p in board["panels"]):
            problems.append("no rows")
        ids, titles = set(), set()
        for p in board["panels"]:
            if p["id"] in ids:
                problems.append(f"duplicate panel id {p['id']}")
            ids.add(p["id"])
        for p in panels_of(board):
            where = f"{p['title']!r}"
            if p["title"] in titles:
                problems.append(f"duplicate title {where}")
            titles.add(p["title"])
            if p.get("datasource") != ds:
                problems.append(f"{where}: panel datasource {p.get('datasource')}")
            if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                problems.append(f"{where}: no unit")
            if len(p.get("description", "")) < 40 or "Bad" not in p.get("description", "") and "bad" not in p.get("description", ""):
                problems.append(f"{where}: description does not say what bad looks like")
            if p["type"] not in ("timeseries", "stat", "table", "heatmap", "state-timeline"):
                problems.append(f"{where}: panel type {p['type']}")
            for target in p.get("targets", []):
                if target.get("datasource") != ds:
                    problems.append(f"{where}: target datasource {target.get('datasource')}")
        for kind, title, ref, expr, ranged in queries_of(board):
            # Every range selector (rate, increase, changes, ...) uses Grafana's $__rate_interval; an
            # instant query (stat, table) may count over the whole time range with $__range.
            for window in re.findall(r"\[([^\]]+)\]", expr):
                allowed = {"$__rate_interval"} if ranged or kind != "panel" else {"$__rate_interval", "$__range"}
                if window not in allowed:
                    problems.append(f"{title} {ref}: range [{window}] instead of {' or '.join(sorted(allowed))}")
            if re.search(r"\b(rate|increase|changes|irate)\s*\(", expr) and not re.search(r"\$__(rate_interval|range)\b", expr):
                problems.append(f"{title} {ref}: rate/increase without $__rate_interval")
        text = json.dumps(board)
        for uid_found in re.findall(r'"uid":\s*"([^"]*)"', text):
            if uid_found not in ("${datasource}", uid):
                problems.append(f"hard-coded uid {uid_found!r}")
        results.check(f"static: {uid} follows the dashboard conventions", not problems, "; ".join(problems[:10]))
    known = {(uid, title) for uid, board in boards.items() for kind, title, *_ in queries_of(board)}
    unknown = sorted(empty - known)
    results.check("static: empty-when-healthy.json names existing panels", not unknown, str(unknown))


def healthy_empty_reasons(empty, kernel_readable):
    """why(uid, title, expr) -> the reason a healthy-state query may return no data, or None (data required)."""
    def why(uid, title, expr):
        if (uid, title) in ROTATION_PANELS:
            return None  # listed, but the test has waited for the first rotation
        if (uid, title) in BEYOND_PANELS:
            # listed, but the healthy node runs the container, web identity and STS probes
            return "absent until the container endpoint's first rotation" if BEYOND_OPTIONAL.search(expr) else None
        if (uid, title) in empty:
            return "listed as empty when healthy"
        if not kernel_readable and KERNEL_CLOCK_METRICS.search(expr):
            return "adjtimex unreadable here: the exporter exports only imds_clock_kernel_readable 0"
        return None
    return why


def check_dashboard_queries(results, stack, boards, empty_reason, label, *, instances=None, only=None):
    """Every query succeeds, as an instant query and, where Grafana runs it over a time range, as a
    range query over the last RANGE_WINDOW s; both return data unless `empty_reason(uid, title, expr)`
    gives a reason. `instances`: uid -> instance (default: All on the fleet, the healthy node on the
    node dashboard); `only`: a set of (uid, title) to check (default: every query)."""
    instances = instances or {"imds-fleet": ".*", "imds-node": HEALTHY}
    checked = []
    for uid, board in boards.items():
        instance = instances[uid]
        for kind, title, ref, expr, ranged in queries_of(board):
            if only is not None and (uid, title) not in only:
                continue
            name = f"{label}: {uid} / {title}" + (f" [{ref}]" if len(board_targets(board, title)) > 1 else "")
            reason = empty_reason(uid, title, expr)
            listed_note = ("; listed as empty when healthy, required after the first rotation"
                           if (uid, title) in ROTATION_PANELS and label == "healthy" else "")
            try:
                query = substitute(expr, instance)
                if kind == "variable":
                    m = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", query.strip())
                    if not m:
                        results.check(name, False, f"not a label_values() query: {query}")
                        continue
                    values = stack.prom.label_values(m.group(2), m.group(1) or "{__name__=~\".+\"}")
                    var_label = m.group(2)
                    if var_label == "phase":
                        # Every phase with the full bucket set, and nothing else.
                        ok = sorted(values) == sorted(PHASES)
                    else:
                        ok = ("imds" if var_label == "job" else HEALTHY) in values
                    results.check(name, ok, f"{var_label} values {values}")
                    checked.append((uid, title, query, len(values)))
                    continue
                data = stack.prom.query(query)
            except (PromError, ValueError) as e:
                results.check(name, False, f"{e}\n       query: {expr}")
                continue
            n = len(data["result"]) if data["resultType"] in ("vector", "matrix") else 1
            checked.append((uid, title, query, n))
            if n == 0 and reason:
                results.check(name, True, f"no data, {reason}")
            else:
                results.check(name, n > 0, f"{n} series" + (f", {reason} but has data" if reason else "") + listed_note)
            if not ranged:
                continue
            name += f" (range {RANGE_WINDOW}s/{RANGE_STEP}s)"
            end = time.time()
            try:
                data = stack.prom.query_range(query, end - RANGE_WINDOW, end, RANGE_STEP)
            except PromError as e:
                results.check(name, False, f"{e}\n       query: {expr}")
                continue
            n = len(data["result"])
            points = sum(len(r["values"]) for r in data["result"])
            checked.append((uid, title, query, n))
            if n == 0 and reason:
                results.check(name, True, f"no data, {reason}")
            else:
                results.check(name, n > 0, f"{n} series, {points} points" + (f", {reason} but has data" if reason else "")
                              + listed_note)
    return checked


def board_targets(board, title):
    for p in panels_of(board):
        if p["title"] == title:
            return p.get("targets", [])
    return []


def panel_expr(board, title, ref=None):
    targets = board_targets(board, title)
    target = next(t for t in targets if ref is None or t.get("refId") == ref)
    return target["expr"]


# ------------------------------------------------------------------------------------ alerts
def alert_names_in_rules():
    text = (ROOT / "alerts" / "imds_exporter.rules.yml").read_text()
    return set(re.findall(r"^\s*-\s*alert:\s*(\w+)", text, re.M))


def active_alerts(stack, selector, window=None):
    """{(alertname, instance, severity, alertstate)} now, or ever within `window` seconds."""
    expr = f"ALERTS{{{selector}}}"
    if window:
        expr = f"max_over_time({expr}[{int(window)}s])"
    return {(l.get("alertname"), l.get("instance"), l.get("severity"), l.get("alertstate"))
            for l, _ in stack.prom.vector(expr)}


def check_rules_health(results, stack, label):
    bad, total = [], 0
    for group in stack.prom.rules()["groups"]:
        for rule in group["rules"]:
            total += 1
            if rule.get("health") == "err" or rule.get("lastError"):
                bad.append(f"{rule['name']}: {rule.get('lastError')}")
    results.check(f"{label}: all {total} rules evaluate without error", total > 0 and not bad, "; ".join(bad))


def healthy_alerts(results, stack, kernel_unsync, kernel_detail):
    window = time.time() - stack.prom_started + 1
    seen = active_alerts(stack, 'alertstate=~"firing|pending", severity=~"warning|critical"', window)
    unexpected = sorted({(a, i, s) for a, i, s, _ in seen if a != KERNEL_CLOCK_ALERT})
    results.check("healthy: no warning/critical alert pending or firing (whole healthy phase)", not unexpected,
                  f"unexpected: {unexpected}")
    kernel_firing = {i for a, i, s, st in active_alerts(stack, f'alertname="{KERNEL_CLOCK_ALERT}", alertstate="firing"')}
    nodes = {n.name for n in stack.nodes}
    if kernel_unsync:
        # This machine's kernel clock is not disciplined (docs/clock.md): the alert is right.
        try:
            wait_for(f"{KERNEL_CLOCK_ALERT} firing on every node",
                     lambda: {i for a, i, s, st in active_alerts(stack, f'alertname="{KERNEL_CLOCK_ALERT}", alertstate="firing"')} >= nodes, 20)
            ok = True
        except TimeoutError:
            ok = False
        results.check(f"healthy: {KERNEL_CLOCK_ALERT} fires, as this kernel clock is unsynchronised", ok,
                      f"{kernel_detail}; firing on {sorted(kernel_firing)}")
    else:
        results.check(f"healthy: {KERNEL_CLOCK_ALERT} quiet, as this kernel clock is synchronised (or unreadable)",
                      not kernel_firing, f"{kernel_detail}; firing on {sorted(kernel_firing)}")


def failure_panels(empty):
    """The panels listed as empty when healthy because they show only failures ("Failed ... by ...")."""
    return {(uid, title) for uid, title in empty if title.startswith("Failed ")}


def outage_panels(empty):
    """The panels listed as empty when healthy because they show only outage windows that ended."""
    return {(uid, title) for uid, title in empty if "outage" in title.lower()}


def alert_series(stack, selector, window=None):
    """The labels of every ALERTS{selector} series now, or ever within `window` seconds."""
    expr = f"ALERTS{{{selector}}}"
    if window:
        expr = f"max_over_time({expr}[{int(window)}s])"
    return [labels for labels, _ in stack.prom.vector(expr)]


def matches(labels, node, expectation):
    alert, severity, sdk, _ = expectation
    return (labels.get("alertname") == alert and labels.get("instance") == node and labels.get("severity") == severity
            and (sdk is None or labels.get("sdk") == sdk))


def describe(expectation):
    alert, severity, sdk, _ = expectation
    return f"{alert}{{severity={severity}" + (f", sdk={sdk}" if sdk else "") + "}"


def shown(labels):
    return labels.get("alertname", "") + (f"{{sdk={labels['sdk']}}}" if labels.get("sdk") else "")


def check_value(results, stack, board, title, instance, test, wording, label):
    name = f"{label}: {board['uid']} / {title} on {instance if instance != '.*' else 'All'}"
    try:
        values = stack.prom.vector(substitute(panel_expr(board, title), instance))
    except PromError as e:
        results.check(name, False, str(e))
        return
    value = values[0][1] if values else None
    results.check(name, value is not None and test(value), f"value {value}, want {wording}")


def check_values_by_sdk(results, stack, board, title, instance, wants, label):
    """A panel with one value per SDK family: each family named in `wants` passes its test."""
    name = f"{label}: {board['uid']} / {title} on {instance if instance != '.*' else 'All'}"
    try:
        values = {labels.get("sdk"): v for labels, v in stack.prom.vector(substitute(panel_expr(board, title), instance))}
    except PromError as e:
        results.check(name, False, str(e))
        return
    for sdk, (test, wording) in wants.items():
        v = values.get(sdk)
        results.check(f"{name} [{sdk}]", v is not None and test(v), f"value {v}, want {wording}")


def unavailable_descriptions(results, stack):
    """ImdsCredentialsUnavailable's description (rendered by Prometheus, /api/v1/alerts) names the
    node's families that still get credentials after a wait over 1 s, and the family it is about."""
    alerts = stack.prom.alerts()
    for node_name, want in WAITING_NAMED.items():
        firing = [a for a in alerts if a["labels"].get("alertname") == UNAVAILABLE
                  and a["labels"].get("instance") == node_name and a.get("state") == "firing"]
        name = f"scenario {node_name}: {UNAVAILABLE}'s description names {', '.join(sorted(want)) or 'no family'} as only waiting"
        if not firing:
            results.check(name, False, "no firing ImdsCredentialsUnavailable on the node")
            continue
        for a in sorted(firing, key=lambda a: a["labels"].get("sdk", "")):
            sdk, text = a["labels"].get("sdk"), a["annotations"].get("description", "")
            m = re.search(r"only after a wait over \S+:([^.]*)\.", text)
            named = set(m.group(1).split()) - {"none"} if m else None
            ok = named == want and f"a {sdk} SDK client created now gets no credentials" in text
            results.check(f"{name} [sdk={sdk}]", ok, f"named {sorted(named) if named is not None else None}: {text!r}")


def write_token_files(workdir):
    """The container authorization token the simulator expects, and a web identity token (a JWT
    with an `exp` a day away; the signature is not checked by the exporter or the stand-in)."""
    import base64

    def part(doc):
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    (Path(workdir) / "container-token").write_text(CONTAINER_TOKEN)
    claims = {"aud": ["sts.amazonaws.com"], "exp": int(time.time()) + 86400,
              "iss": "https://oidc.eks.us-east-1.amazonaws.com/id/E2E", "sub": "system:serviceaccount:e2e:imds-exporter"}
    (Path(workdir) / "web-identity-token").write_text(f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl")


def beyond_probes_healthy(results, stack):
    """The healthy node's container, web identity and STS probes succeed, against its simulator;
    the nodes without their flags have none of their series and sent their simulators nothing."""
    for probe in BEYOND_PROBES:
        try:
            wait_for(f"imds_probe_success{{probe={probe!r}}} == 1 on {HEALTHY}",
                     lambda: stack.prom.vector(f'imds_probe_success{{instance="{HEALTHY}", probe="{probe}"}} == 1'), 20)
            ok = True
        except TimeoutError:
            ok = False
        results.check(f"healthy: probe {probe} succeeds on {HEALTHY}", ok)
    codes = {l.get("source"): l.get("code") for l, _ in stack.prom.vector(f'imds_sts_last_response{{instance="{HEALTHY}"}} == 1')}
    results.check(f"healthy: STS answered ok for the imds and container credentials of {HEALTHY}",
                  codes == {"imds": "ok", "container": "ok"}, str(codes))
    requests = stack.node(HEALTHY).state()["requests"]
    counted = {g: sum(requests.get(g, {}).values()) for g in ("container", "sts")}
    results.check(f"healthy: the simulator of {HEALTHY} counted container and STS requests", all(counted.values()), str(counted))
    plain = [n.name for n in stack.nodes if n.name not in BEYOND_NODE_FLAGS and not SCENARIOS.get(n.name, (0, 0, 0, []))[3]]
    series = stack.prom.vector('count by (instance, probe) (imds_probe_runs_total{probe=~"container|web_identity|sts"})')
    leaked = sorted(f"{l.get('instance')}/{l.get('probe')}" for l, _ in series if l.get("instance") in plain)
    results.check(f"healthy: the {len(plain)} nodes without the flags have no container, web identity or STS series", not leaked,
                  str(leaked))
    asked = {n: {g: requests for g, requests in stack.node(n).state()["requests"].items() if g in ("container", "sts")}
             for n in plain}
    results.check(f"healthy: the simulators of the {len(plain)} nodes without the flags counted no container or STS request",
                  not any(asked.values()), str({n: a for n, a in asked.items() if a}))


def run_blip(results, stack):
    """BLIP_NODE: outage for BLIP_SECONDS, then healthy; the outage watch counts it and
    ImdsCredentialsOutage fires. Returns the seconds from healthy's return to firing, or None."""
    node = stack.node(BLIP_NODE)
    pre = [shown(l) for l in alert_series(stack, f'instance="{BLIP_NODE}", alertstate=~"firing|pending", '
                                                 'severity=~"warning|critical"')
           if l.get("alertname") != KERNEL_CLOCK_ALERT]
    results.check(f"blip {BLIP_NODE}: no warning/critical alert active before the blip", not pre, str(pre))
    began = time.time()
    node.switch("outage")
    time.sleep(BLIP_SECONDS)
    node.switch("healthy")
    back = time.monotonic()
    name = f"blip {BLIP_NODE} (outage for {BLIP_SECONDS} s, then healthy): {OUTAGE}{{severity=warning}} fires"
    fired = None
    try:
        wait_for(f"{OUTAGE} firing on {BLIP_NODE}",
                 lambda: any(l.get("severity") == "warning" for l in alert_series(
                     stack, f'alertname="{OUTAGE}", instance="{BLIP_NODE}", alertstate="firing"')),
                 BLIP_DEADLINE, interval=0.5)
        fired = time.monotonic() - back
        results.check(name, True, f"firing {fired:.1f}s after healthy returned")
    except TimeoutError as e:
        results.check(name, False, str(e))
    count = stack.prom.vector(f'imds_credentials_outages_total{{instance="{BLIP_NODE}"}}')
    length = stack.prom.vector(f'imds_credentials_last_outage_duration_seconds{{instance="{BLIP_NODE}"}}')
    count = count[0][1] if count else None
    length = length[0][1] if length else None
    # The window runs from its first failed check to the first served one: within a check interval
    # (1.5 s) of the outage either way, plus a check's 1 s timeout; generous bounds.
    results.check(f"blip {BLIP_NODE}: one outage window counted, about {BLIP_SECONDS} s long",
                  count == 1 and length is not None and 1 <= length <= 7,
                  f"imds_credentials_outages_total {count}, imds_credentials_last_outage_duration_seconds {length}")
    window = time.time() - began + 1
    paged = sorted({f"{shown(l)} {l.get('alertstate')}" for l in alert_series(
        stack, f'instance="{BLIP_NODE}", alertname="{UNAVAILABLE}"', window)})
    info(f"{BLIP_NODE}: during the blip, with every `for:` at 5 s: {UNAVAILABLE} " + (", ".join(paged) if paged else "never pending"))
    return fired


def run_scenarios(results, stack, boards, empty):
    names = alert_names_in_rules()
    for node, (_, _, expected, _) in SCENARIOS.items():
        for alert in sorted({e[0] for e in expected}):
            results.check(f"scenario {node}: alert {alert} exists in alerts/imds_exporter.rules.yml", alert in names)
    results.check(f"blip {BLIP_NODE}: alert {OUTAGE} exists in alerts/imds_exporter.rules.yml", OUTAGE in names)

    # Nothing may be active on the scenario nodes before the switch, or a pass would mean nothing.
    before = alert_series(stack, 'alertstate=~"firing|pending"')
    switched = {}
    for node_name, (kind, arg, expected, _) in SCENARIOS.items():
        pre = sorted({describe(e) for e in expected for labels in before if matches(labels, node_name, e)})
        results.check(f"scenario {node_name}: {', '.join(sorted({e[0] for e in expected}))} inactive before the switch",
                      not pre, str(pre))
        node = stack.node(node_name)
        if kind == "scenario":
            node.switch(arg)
        elif kind == "container":
            node.container_switch(arg)
        elif kind == "sts":
            node.sts_code(arg)
        else:
            node.clock_offset(arg)
        switched[node_name] = time.monotonic()

    fired, pending_seen = {}, {}  # (node, expectation) -> seconds from the switch
    remaining = [(n, e) for n, (_, _, expected, _) in SCENARIOS.items() for e in expected]
    deadline = time.monotonic() + DEADLINE
    while remaining and time.monotonic() < deadline:
        now_alerts = alert_series(stack, 'alertstate=~"firing|pending"')
        for key in list(remaining):
            node_name, e = key
            states = {l.get("alertstate") for l in now_alerts if matches(l, node_name, e)}
            elapsed = time.monotonic() - switched[node_name]
            if states and key not in pending_seen:
                pending_seen[key] = elapsed
            if "firing" in states:
                fired[key] = elapsed
                remaining.remove(key)
        time.sleep(0.5)
    firing_now = alert_series(stack, 'alertstate="firing"')
    timings = {}
    for node_name, (kind, arg, expected, _) in SCENARIOS.items():
        for e in expected:
            key = (node_name, e)
            name = f"scenario {node_name} ({kind} {arg}): {describe(e)} fires"
            if key in fired:
                results.check(name, True, f"after {fired[key]:.1f}s (expression true after {pending_seen.get(key, fired[key]):.1f}s)")
            else:
                results.check(name, False, f"not firing within {DEADLINE}s"
                              + (f" (pending after {pending_seen[key]:.1f}s)" if key in pending_seen else ""))
        others = sorted({shown(l) for l in firing_now if l.get("instance") == node_name
                         and not any(matches(l, node_name, e) for e in expected) and l.get("alertname") != KERNEL_CLOCK_ALERT})
        if others:
            info(f"{node_name}: also firing: {', '.join(others)}")
        if all((node_name, e) in fired for e in expected):
            timings[node_name] = max(fired[(node_name, e)] for e in expected)
    unavailable_descriptions(results, stack)

    # A blip while the scenarios are on: its count must show on the dashboards checked below.
    blip = run_blip(results, stack)
    if blip is not None:
        timings[f"{BLIP_NODE} (from the outage's end)"] = blip

    # While every scenario is on, the dashboards must show it.
    fleet, node_board = boards["imds-fleet"], boards["imds-node"]
    for title, (test, wording) in FLEET_UNDER_FAILURE.items():
        check_value(results, stack, fleet, title, ".*", test, wording, "failures")
    for title, wants in FLEET_BY_SDK.items():
        check_values_by_sdk(results, stack, fleet, title, ".*", wants, "failures")
    for (node_name, title), wants in NODE_BY_SDK.items():
        check_values_by_sdk(results, stack, node_board, title, node_name, wants, "failures")
    check_value(results, stack, node_board, "Outages in the range", BLIP_NODE, lambda v: v == 1, "1 (the blip)", "failures")
    # The panels empty when healthy must have data now (instant and range queries): the failure
    # panels of the fleet and of the node in an outage, the outage panels of the fleet and the blip node.
    only = failure_panels(empty)
    results.check("failures: empty-when-healthy.json lists failure panels to check", len(only) >= 3, str(sorted(only)))
    check_dashboard_queries(results, stack, boards, lambda *_: None, "failures", only=only,
                            instances={"imds-fleet": ".*", "imds-node": FAILING_NODE})
    only = outage_panels(empty)
    results.check("failures: empty-when-healthy.json lists outage panels to check", len(only) >= 3, str(sorted(only)))
    check_dashboard_queries(results, stack, boards, lambda *_: None, "outage", only=only,
                            instances={"imds-fleet": ".*", "imds-node": BLIP_NODE})
    problems = {l.get("instance"): v for l, v in stack.prom.vector(substitute(panel_expr(fleet, "Worst nodes", "problems"), ".*"))}
    bad = {n for n in [*SCENARIOS, BLIP_NODE] if n not in BEYOND_NODES and problems.get(n, 0) < 1}
    results.check("failures: Worst nodes table counts problems on every node with broken IMDS (the blip's outage too) and none on the healthy one",
                  not bad and problems.get(HEALTHY) == 0,
                  ", ".join(f"{k}={v:g}" for k, v in sorted(problems.items())))

    # Back to healthy.
    for node_name, (kind, arg, _, _) in SCENARIOS.items():
        node = stack.node(node_name)
        if kind == "scenario":
            node.switch("healthy")
        elif kind == "container":
            node.container_switch("healthy")
        elif kind == "sts":
            node.sts_code("auto")
        else:
            node.clock_offset("0")
    back = time.monotonic()
    for node_name, (kind, arg, expected, _) in SCENARIOS.items():
        for e in expected:
            if not e[3]:
                info(f"{node_name}: {e[0]} looks at 5-minute rate windows; it resolves 5 min after healthy returns (not waited for)")
        following = [e for e in expected if e[3]]
        if not following:
            continue
        what = ", ".join(describe(e) for e in following)
        try:
            wait_for(f"{what} on {node_name} to resolve",
                     lambda: not any(matches(l, node_name, e) for l in alert_series(stack, 'alertstate=~"firing|pending"')
                                     for e in following),
                     30)
            results.check(f"recovery {node_name}: {what} resolve after the switch back", True,
                          f"after {time.monotonic() - back:.1f}s")
        except TimeoutError as e:
            results.check(f"recovery {node_name}: {what} resolve after the switch back", False, str(e))
    # Failures that ended are outage windows now (not asserted: a report of what the rules make of it).
    outage_nodes = sorted({l.get("instance") for l in alert_series(stack, f'alertname="{OUTAGE}", alertstate=~"firing|pending"')})
    info(f"after the switch back, {OUTAGE} is active on: {', '.join(outage_nodes) or 'no node'}")
    return timings


# -------------------------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=os.environ.get("IMDS_EXPORTER_BIN", str(ROOT / "target/debug/imds_exporter")))
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory with every log")
    args = parser.parse_args()

    started = time.monotonic()
    results = Results()
    boards, empty = load_dashboards()
    static_checks(results, boards, empty)
    results.check(f"static: imds-node has a collapsed row {BEYOND_ROW!r} with panels", len(BEYOND_PANELS) >= 5,
                  str(sorted(t for _, t in BEYOND_PANELS)))

    kernel_readable, kernel_unsync, kernel_detail = read_kernel_clock()
    info(f"kernel clock: {kernel_detail} -> "
         f"{'unreadable' if not kernel_readable else 'unsynchronised' if kernel_unsync else 'synchronised'}")

    stack = Stack(args.binary, [HEALTHY, *SCENARIOS, BLIP_NODE], rotate_every="20s", lifetime="1h", rule_for="5s",
                  node_args={**{n: flags for n, (_, _, _, flags) in SCENARIOS.items() if flags}, **BEYOND_NODE_FLAGS})
    write_token_files(stack.workdir)
    timings = {}
    try:
        stack.start()
        info(f"fleet of {len(stack.nodes)} nodes up after {time.monotonic() - started:.1f}s; Prometheus {stack.prom.url}; "
             f"rules with shortened for: {stack.rule_rewrites}; logs in {stack.workdir}")
        results.check("setup: every `for:` of the rule copies shortened", sum(stack.rule_rewrites.values()) > 0,
                      str(stack.rule_rewrites))
        # Rates need a few scrapes, the rotation panels a first rotation (every 20 s).
        wait_for("a first credential rotation on the healthy node",
                 lambda: stack.prom.vector(f'imds_credentials_rotations_total{{instance="{HEALTHY}"}} >= 1'), 60)
        time.sleep(3)
        info(f"healthy state reached after {time.monotonic() - started:.1f}s")

        beyond_probes_healthy(results, stack)
        checked = check_dashboard_queries(results, stack, boards, healthy_empty_reasons(empty, kernel_readable), "healthy")
        check_rules_health(results, stack, "healthy")
        healthy_alerts(results, stack, kernel_unsync, kernel_detail)

        timings = run_scenarios(results, stack, boards, empty)
        check_rules_health(results, stack, "after failures")
        window = time.time() - stack.prom_started + 1
        leaked = sorted({a for a, i, s, st in active_alerts(
            stack, f'instance="{HEALTHY}", alertstate=~"firing|pending", severity=~"warning|critical"', window)
            if a != KERNEL_CLOCK_ALERT})
        results.check("isolation: the healthy node had no warning/critical alert during the whole run", not leaked, str(leaked))
        for node_name in NEVER_CRITICAL:
            critical = sorted({f"{shown(l)} {l.get('alertstate')}" for l in alert_series(
                stack, f'instance="{node_name}", severity="critical"', window)})
            results.check(f"isolation: {node_name} ({' '.join(SCENARIOS[node_name][3])}) had no critical alert pending or "
                          "firing during the whole run", not critical, str(critical))
        for node_name, allowed in ONLY_UNAVAILABLE.items():
            paged = {l.get("sdk") for l in alert_series(stack, f'instance="{node_name}", alertname="{UNAVAILABLE}"', window)}
            results.check(f"isolation: {UNAVAILABLE} on {node_name} only for {', '.join(sorted(allowed)) or 'no family'}, "
                          "pending or firing, during the whole run", paged == allowed, f"sdk values {sorted(paged)}")
        info(f"{len(checked)} dashboard queries executed")
    except Exception as e:  # a broken setup is a failure, reported with the logs
        results.check("setup and run", False, f"{type(e).__name__}: {e}")
        for name, _, log_path in stack.procs:
            print(f"----- {name} ({log_path})\n{stack.tail(log_path)}")
    finally:
        stack.cleanup(keep=args.keep_logs or results.failed > 0)
        if results.failed:
            info(f"logs kept in {stack.workdir}")

    if timings:
        info("firing times (the last alert of each node): "
             + ", ".join(f"{n.removeprefix('e2e-')} {t:.1f}s" for n, t in timings.items()))
    info(f"total {time.monotonic() - started:.0f}s")
    if results.failures:
        info("failed: " + "; ".join(results.failures))
    print(f"e2e: {results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


class Interrupted(Exception):
    pass


def interrupted(signum, _frame):
    raise Interrupted(f"interrupted by signal {signum}")


if __name__ == "__main__":
    import signal

    # A TERM (the shell's trap, `timeout`) fails the run with a summary and stops the fleet.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    sys.exit(main())
