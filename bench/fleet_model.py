"""The fleet's node classes: recorded from real exporters, replayed as values over time.

A class is one simulator scenario (healthy, outage, hop-limit, ...) watched by one real
imds_exporter (the release build, its default flags, probe intervals shortened to 1 s so that a
recording takes seconds). `record()` snapshots its /metrics after each of R probe runs; the
snapshots, with the exposition's HELP and TYPE lines, are the class. `values(cls, steps, start_ms)`
replays a class at 30 s steps for as long as needed, one probe run per step:

- counters (TYPE counter, a histogram's _bucket/_sum/_count) add the increments of the recorded
  runs in turn, so rate() sees what the real exporter did in that scenario;
- gauges take the recorded values in turn (durations, NTP offsets, the SDK verdicts);
- timestamps (`*_timestamp_seconds`) follow the clock: those that moved with each run keep their
  distance to the run's time; on a class that gets credentials, the credentials' expiration,
  LastUpdated and last rotation step hourly (EC2 reissues about hourly, valid about 6 h) and
  imds_credentials_rotations_total counts the hours; the rest keep their recorded value's
  distance to the history's start;
- the probe intervals read the defaults (imds 30 s, ntp 60 s), the NTP server label the Amazon
  Time Sync address, and each node gets its own instance id and one of three availability zones.

Used by bench/fleet.py (the history blocks) and bench/fleet_serve.py (the live expositions), so
the live values continue the history's. Python 3 standard library plus numpy.
"""

import json
import math
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np

STEP_S = 30
NTP_SERVER = "169.254.169.123:123"  # Amazon Time Sync, as the exporter's default
REAL_INTERVALS = {"imds": 30.0, "ntp": 60.0}
INSTANCE_ID = "i-0123456789abcdef0"  # what the simulator serves; replaced per node
ZONE = "us-east-1a"
ROTATING = ("imds_credentials_expiration_timestamp_seconds", "imds_credentials_last_updated_timestamp_seconds",
            "imds_credentials_last_rotation_timestamp_seconds")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

# The fleet's mix: (class name, share of nodes, simulator scenario, simulator clock offset in s).
# About 90 % healthy (half with IMDSv1 still on, half IMDSv2-only), the rest failing in the ways
# docs/simulator.md describes; a further 0.5 % of the nodes' exporters are down in the live part.
MIX = [
    ("healthy", 0.45, "healthy", 0),
    ("imdsv2-only", 0.45, "imdsv2-only", 0),
    ("hop-limit", 0.02, "hop-limit", 0),
    ("clock-offset", 0.01, "healthy", 2.5),
    ("outage", 0.01, "outage", 0),
    ("throttle-partial", 0.01, "throttle-partial?ratio=0.3", 0),
    ("jitter", 0.01, "jitter", 0),
    ("expired", 0.005, "expired", 0),
    ("server-error", 0.005, "server-error", 0),
    ("no-role", 0.005, "no-role", 0),
]
DOWN_SHARE = 0.005

# The kernel clock view (adjtimex) is this machine's, not the simulator's: a VM here need not be
# synchronised. An EC2 node runs chrony against Amazon Time Sync: synchronised, errors of a few
# hundred microseconds (maxerror grows by 500 us/s between updates and is reset at each one).
KERNEL_CLOCK = {
    "imds_clock_synchronized": lambda steps: np.ones(len(steps)),
    "imds_clock_kernel_readable": lambda steps: np.ones(len(steps)),
    "imds_clock_max_error_seconds": lambda steps: 0.0002 + 0.0005 * ((steps * 7) % 16),
    "imds_clock_estimated_error_seconds": lambda steps: 0.00001 * (3 + (steps * 5) % 11),
}


def parse_exposition(text):
    """(families, samples): families = [(name, [comment lines])] in order; samples = {series text:
    (family, name, labels tuple, value)}."""
    families, samples = [], {}
    current, types = None, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                if current is None or current[0] != parts[2]:
                    current = (parts[2], [])
                    families.append(current)
                current[1].append(line)
                if parts[1] == "TYPE":
                    types[parts[2]] = parts[3].strip()
            continue
        key, value = line.rsplit(" ", 1)
        name = key.split("{", 1)[0]
        labels = tuple(LABEL_RE.findall(key.split("{", 1)[1])) if "{" in key else ()
        family = current[0] if current else name
        samples[key] = (family, name, labels, float(value))
    return families, samples, types


def _kind(family, name, types):
    t = types.get(family, "untyped")
    if name.endswith("_timestamp_seconds") or name == "process_start_time_seconds":
        return "timestamp"
    if t in ("counter", "histogram", "summary"):
        return "counter"
    return "gauge"


def _rewrite(name, labels):
    out = []
    for k, v in labels:
        if k == "server" and name.startswith("imds_ntp_"):
            v = NTP_SERVER
        out.append((k, v))
    return tuple(out)


def record(binary, runs, workdir, log=print):
    """One real simulator + exporter per class, all at once; `runs`+1 snapshots of /metrics each
    (one after every imds probe run). Returns the model (a JSON-able dict)."""
    from stack import free_port  # tests/e2e/stack.py, on sys.path via bench/fleet.py

    workdir = Path(workdir)
    procs = []
    nodes = []
    try:
        for name, share, scenario, offset in MIX:
            sim_log = workdir / f"record-sim-{name}.log"
            sim = subprocess.Popen([binary, "simulate", "--listen", "127.0.0.1:0", "--ntp-listen", "127.0.0.1:0",
                                    "--scenario", scenario, "--clock-offset", str(offset), "--log.level", "warn"],
                                   stdout=open(sim_log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            procs.append(sim)
            nodes.append({"name": name, "share": share, "scenario": scenario, "clock_offset": offset,
                          "sim_log": sim_log, "snapshots": [], "times": []})
        deadline = time.monotonic() + 30
        for node in nodes:
            while True:
                text = node["sim_log"].read_text(errors="replace")
                imds = re.search(r"IMDS simulator on (http://127\.0\.0\.1:\d+)", text)
                ntp = re.search(r"SNTP answerer on (127\.0\.0\.1:\d+)", text)
                if imds and ntp:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"simulator for {node['name']} did not start: {text[-500:]}")
                time.sleep(0.1)
            node["port"] = free_port()
            exp = subprocess.Popen([binary, "--web.listen-address", f"127.0.0.1:{node['port']}",
                                    "--imds.endpoint", imds.group(1), "--ntp.server", ntp.group(1),
                                    "--imds.interval", "1s", "--ntp.interval", "1s", "--log.level", "error"],
                                   stdout=open(workdir / f"record-exporter-{node['name']}.log", "wb"),
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            procs.append(exp)
        deadline = time.monotonic() + 30 + 4 * runs
        last_runs = {n["name"]: None for n in nodes}
        while any(len(n["snapshots"]) <= runs for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("recording the classes took too long: "
                                   + ", ".join(f"{n['name']} {len(n['snapshots'])}" for n in nodes))
            for node in nodes:
                if len(node["snapshots"]) > runs:
                    continue
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{node['port']}/metrics", timeout=2) as r:
                        text = r.read().decode()
                except OSError:
                    continue
                m = re.search(r'^imds_probe_runs_total\{probe="imds"\} (\S+)$', text, re.M)
                if not m or float(m.group(1)) < 1:
                    continue
                if last_runs[node["name"]] != m.group(1):
                    last_runs[node["name"]] = m.group(1)
                    node["snapshots"].append(text)
                    node["times"].append(time.time())
            time.sleep(0.1)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
    classes = []
    for node in nodes:
        parsed = [parse_exposition(t) for t in node["snapshots"]]
        families, last, types = parsed[-1]
        series = []
        for key, (family, name, labels, _) in last.items():
            vals = [p[1][key][3] if key in p[1] else last[key][3] for p in parsed]
            series.append({"key": key, "family": family, "name": name, "labels": labels,
                           "kind": _kind(family, name, types), "values": vals})
        success = any(s["name"] == "imds_probe_success" and dict(s["labels"]).get("probe") == "imds"
                      and s["values"][-1] == 1 for s in series)
        rotating = success and node["scenario"] not in ("expired", "expiring", "stale")
        classes.append({"name": node["name"], "share": node["share"], "scenario": node["scenario"],
                        "clock_offset": node["clock_offset"], "rotating": rotating,
                        "families": [[f, lines] for f, lines in families], "series": series,
                        "times": node["times"]})
        log(f"  recorded {node['name']}: {len(series)} series, {len(node['snapshots']) - 1} runs")
    return {"runs": runs, "classes": classes}


def exporter_series(cls):
    """The label tuples (with __name__) of a class's exposition, NTP server rewritten."""
    return [(("__name__", s["name"]),) + _rewrite(s["name"], tuple(map(tuple, s["labels"]))) for s in cls["series"]]


def values(cls, steps, start_ms):
    """float64 [n_series, len(steps)]: the class's exposition at those 30 s steps."""
    steps = np.asarray(steps, dtype=np.int64)
    t = start_ms / 1000.0 + steps * STEP_S
    start_s = start_ms / 1000.0
    times = np.array(cls["times"])
    out = np.empty((len(cls["series"]), len(steps)))
    for i, s in enumerate(cls["series"]):
        v = np.array(s["values"], dtype=np.float64)
        r = len(v) - 1
        labels = dict(map(tuple, s["labels"]))
        if s["name"] == "imds_probe_interval_seconds" and labels.get("probe") in REAL_INTERVALS:
            out[i] = REAL_INTERVALS[labels["probe"]]
        elif s["name"] in KERNEL_CLOCK:
            out[i] = KERNEL_CLOCK[s["name"]](steps)
        elif s["name"] == "imds_credentials_rotations_total" and cls["rotating"]:
            out[i] = np.floor((t - start_s) / 3600.0)
        elif s["kind"] == "counter":
            d = np.diff(v)
            cum = np.concatenate([[0.0], np.cumsum(d)])
            out[i] = v[0] + (steps // r) * cum[-1] + cum[steps % r]
        elif s["kind"] == "gauge":
            out[i] = v[1:][steps % r]
        else:  # timestamp
            hour = np.floor(t / 3600.0) * 3600.0
            if s["name"] in ROTATING and cls["rotating"]:
                out[i] = hour + (21600.0 if s["name"] == ROTATING[0] else 0.0)
            elif np.all(v == 0):
                out[i] = 0.0
            elif np.all(v == v[0]):
                out[i] = v[0] - times[0] + start_s
            else:
                rel = v[1:] - times[1:]
                out[i] = np.round(t + rel[steps % r], 3)
    return out


def recorded_rule_values(cls, vals):
    """The three recording rules of alerts/imds_exporter.rules.yml for one node of the class, from its
    exposition values (increases over 10 steps = 5 m; Prometheus' extrapolation cancels in a ratio)."""
    idx = {}
    for i, s in enumerate(cls["series"]):
        idx.setdefault(s["name"], []).append((dict(map(tuple, s["labels"])), i))

    def total(name, **match):
        rows = [i for labels, i in idx.get(name, []) if all(re.fullmatch(v, labels.get(k, "")) for k, v in match.items())]
        return vals[rows].sum(axis=0) if rows else np.zeros(vals.shape[1])

    def inc(x):
        back = np.concatenate([np.repeat(x[:1], 10), x[:-10]])[: len(x)]
        return x - back

    with np.errstate(divide="ignore", invalid="ignore"):
        token = inc(total("imds_request_failures_total", phase="token", reason="timeout")) / inc(
            total("imds_request_duration_seconds_count", phase="token"))
        v1 = 1 - inc(total("imds_request_failures_total", phase="imdsv1")) / inc(
            total("imds_request_duration_seconds_count", phase="imdsv1"))
        slow = 1 - inc(total("imds_request_duration_seconds_bucket", le=r"1(\.0)?")) / inc(
            total("imds_request_duration_seconds_count"))
    return {"instance:imds_token_timeouts_per_token_requests:ratio_rate5m": token,
            "instance:imds_v1_answers:ratio_rate5m": v1,
            "instance:imds_request_duration_seconds_over_1s:ratio_rate5m": slow}


def exposition(cls, vals_col):
    """The text exposition of a class for one step (a column of values())."""
    by_family = {}
    for s, v in zip(cls["series"], vals_col):
        by_family.setdefault(s["family"], []).append((s, v))
    out = []
    for family, lines in cls["families"]:
        out.extend(lines)
        for s, v in by_family.pop(family, []):
            labels = _rewrite(s["name"], tuple(map(tuple, s["labels"])))
            lab = "{" + ",".join(f'{k}="{val}"' for k, val in labels) + "}" if labels else ""
            out.append(f"{s['name']}{lab} {format_value(v)}")
    for rest in by_family.values():
        for s, v in rest:
            out.append(f"{s['key']} {format_value(v)}")
    return "\n".join(out) + "\n"


def format_value(v):
    if math.isnan(v):
        return "NaN"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def node_instance_id(n):
    return f"i-{0x0a11ce0000000000 + n:017x}"


def node_zone(n):
    return "us-east-1" + "abc"[n % 3]
