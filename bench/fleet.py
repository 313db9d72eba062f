#!/usr/bin/env python3
"""The fleet benchmark behind BENCHMARKS.md's fleet table: 1,000 to 10,000 nodes in a real
Prometheus (Debian's), with the bundled rules, and the fleet dashboard's queries against it.

Run it through `bench/fleet`, which installs Prometheus, builds the release binary and makes the
venv. For each fleet size:

1. Node classes are recorded once from real exporters (bench/fleet_model.py): one simulator and one
   exporter per scenario of the mix, R probe runs each. Whatever the exporter exposes is what the
   fleet carries: the benchmark follows the exposition when it changes.
2. 24 h of history are written as TSDB blocks (bench/fleet_tsdb.py): every node's series at a 30 s
   scrape interval, Prometheus' scrape series (up, scrape_*) and the bundled recording rules'
   series, laid out as a long-running server's compactor leaves them.
3. Prometheus is started on that data with the bundled rule files (alerts/*.rules.yml, unchanged:
   real `for:` and windows) and scrapes every node every 30 s from bench/fleet_serve.py, which
   serves each node's live exposition (its class, continued from the history). Nothing but
   127.0.0.1 is used.
4. After a warm-up, each rule group's evaluation time is sampled from /api/v1/rules (the value of
   `prometheus_rule_group_last_duration_seconds`) for several evaluations; then head series and
   the server's RSS; then every query of dashboards/imds-fleet.json (panels and variables) over
   1 h and 24 h, as Grafana would send it (below), timed from the HTTP client, several times.

Grafana's query for a panel: interval = max(the datasource's scrape interval, 30 s, and
range / max data points rounded as Grafana rounds intervals), where max data points is the
panel's `maxDataPoints` or its width in pixels on a 1920-pixel screen (gridPos.w / 24 x 1,900);
step = interval; $__rate_interval = max(interval + 30 s, 4 x 30 s); $__range = the range; stat
and table panels are instant queries at the range's end; job = "imds", instance = All (".*").
"""

import argparse
import atexit
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))
from stack import dashboard_values, free_port, substitute  # noqa: E402
import fleet_model  # noqa: E402
import fleet_tsdb  # noqa: E402
import numpy as np  # noqa: E402

PROMETHEUS = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")
MARK_BEGIN = "<!-- fleet:begin (written by bench/fleet; edit the notes outside these markers) -->"
MARK_END = "<!-- fleet:end -->"
SCRAPE_S = 30
SCREEN_PX = 1900
RULE_TARGET_S = 1.0
QUERY_TARGET_S = 2.0
HOUR_MS = 3_600_000
# A query is given up after this (Grafana's data proxy gives up after 30 s by default; 60 s shows a
# little more of the growth); one that takes longer than SLOW_ONCE_S is not repeated.
QUERY_TIMEOUT_S = 60
SLOW_ONCE_S = 10

_children = []


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def spawn(argv, log_path, nofile=True):
    def pre():
        os.setsid()
        if nofile:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    p = subprocess.Popen(argv, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         preexec_fn=pre)
    _children.append(p)
    _write_pidfile()
    return p


def _write_pidfile():
    pidfile = os.environ.get("FLEET_PIDFILE")
    if pidfile and os.path.exists(pidfile):
        pids = [os.getpid()] + [p.pid for p in _children if p.poll() is None]
        Path(pidfile).write_text("".join(f"{pid}\n" for pid in pids))


def stop(p, timeout=20):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    _write_pidfile()


@atexit.register
def _stop_all():
    for p in _children:
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass


def loadavg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def get_json(url, timeout=300):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def api(base, path, params, timeout=300):
    """(seconds, data or None, error or None) of one Prometheus API call, timed from the client."""
    url = f"{base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
        elapsed = time.perf_counter() - t0
        doc = json.loads(body)
    except urllib.error.HTTPError as e:
        elapsed = time.perf_counter() - t0
        try:
            doc = json.loads(e.read())
        except ValueError:
            return elapsed, None, f"HTTP {e.code}"
    except OSError as e:
        return time.perf_counter() - t0, None, f"{type(e).__name__}: {e}"
    if doc.get("status") != "success":
        return elapsed, None, f"{doc.get('errorType')}: {doc.get('error')}"
    return elapsed, doc, None


# ------------------------------------------------------------------------------------ Grafana
GRAFANA_ROUND = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
                 (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
                 (45000, 30000), (90000, 60000), (150000, 120000), (450000, 300000),
                 (1350000, 900000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
                 (16200000, 10800000), (32400000, 21600000), (86400000, 43200000)]


def grafana_round_interval(ms):
    """Grafana's roundInterval (kbn): the 'nice' interval it rounds range / max data points to."""
    for limit, value in GRAFANA_ROUND:
        if ms < limit:
            return value
    return 86400000


def dashboard_queries(path):
    """[(panel title, panel type, target refId, expr, instant, max data points)] of a dashboard, and
    its variable queries [(name, label, match)]."""
    doc = json.loads(Path(path).read_text())

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    out = []
    for p in panels(doc["panels"]):
        if p.get("type") == "row":
            continue
        width = p.get("gridPos", {}).get("w", 24)
        mdp = p.get("maxDataPoints") or round(width / 24 * SCREEN_PX)
        for t in p.get("targets", []):
            if "expr" in t:
                out.append({"title": p["title"], "type": p["type"], "ref": t.get("refId", "A"), "expr": t["expr"],
                            "instant": bool(t.get("instant")) and not t.get("range"), "max_data_points": mdp})
    variables = []
    for v in doc.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
        if m:
            variables.append({"name": v["name"], "match": m.group(1), "label": m.group(2)})
    return out, variables


def grafana_params(q, range_s):
    interval_ms = max(SCRAPE_S * 1000, grafana_round_interval(range_s * 1000 / q["max_data_points"]))
    interval_s = interval_ms // 1000
    rate_interval = max(interval_s + SCRAPE_S, 4 * SCRAPE_S)
    values = dashboard_values(".*", rate_interval=f"{rate_interval}s", interval=f"{interval_s}s",
                              range_=f"{range_s}s")
    return substitute(q["expr"], values), interval_s


# ------------------------------------------------------------------------------------ the fleet
def assign(model, n_nodes, seed=18):
    """node -> class index (the mix's shares, largest remainder, shuffled), and the nodes whose
    exporter is down in the live part (from the healthy ones)."""
    classes = model["classes"]
    shares = np.array([c["share"] for c in classes])
    shares = shares / shares.sum()
    counts = np.floor(shares * n_nodes).astype(int)
    rest = n_nodes - counts.sum()
    for i in np.argsort(-(shares * n_nodes - counts))[:rest]:
        counts[i] += 1
    node_class = np.repeat(np.arange(len(classes)), counts)
    rng = np.random.default_rng(seed)
    rng.shuffle(node_class)
    healthy = np.flatnonzero(node_class == 0)
    n_down = int(round(fleet_model.DOWN_SHARE * n_nodes))
    down = sorted(rng.choice(healthy, size=n_down, replace=False).tolist()) if n_down else []
    return node_class, down


def node_name(n):
    return f"ip-10-{(n >> 16) & 255}-{(n >> 8) & 255}-{n & 255}.ec2.internal"


def node_pod(n):
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    x = (n * 2654435761) & 0xFFFFFFFF
    return "imds-exporter-" + "".join(alphabet[(x >> (5 * i)) % len(alphabet)] for i in range(5))


def node_labels(n):
    return (("instance", node_name(n)), ("job", "imds"), ("namespace", "imds-exporter"), ("pod", node_pod(n)),
            ("view", "host"))


def node_series_labels(n, labels):
    if labels[0][1] != "imds_instance_info":
        return labels
    return tuple((k, fleet_model.node_instance_id(n) if k == "instance_id" else fleet_model.node_zone(n)
                  if k == "availability_zone" else v) for k, v in labels)


def class_arrays(model, n_steps, start_ms, seed=7):
    """Per class: the series (exporter, scrape, recording rules) and their values over n_steps."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n_steps)
    out = []
    for cls in model["classes"]:
        series = fleet_model.exporter_series(cls)
        vals = fleet_model.values(cls, steps, start_ms)
        n_exposed = len(series)
        scrape = {
            "up": np.ones(n_steps),
            "scrape_duration_seconds": np.round(0.002 + rng.gamma(2.0, 0.0015, n_steps), 9),
            "scrape_samples_scraped": np.full(n_steps, float(n_exposed)),
            "scrape_samples_post_metric_relabeling": np.full(n_steps, float(n_exposed)),
            "scrape_series_added": np.zeros(n_steps),
        }
        rules = fleet_model.recorded_rule_values(cls, vals)
        extra = list(scrape.items()) + list(rules.items())
        series = series + [(("__name__", name),) for name, _ in extra]
        vals = np.vstack([vals] + [v[None, :] for _, v in extra])
        out.append({"name": cls["name"], "series": series, "values": np.ascontiguousarray(vals), "exposed": n_exposed})
    return out


def write_history(model, node_class, data_dir, hours):
    """Blocks from `hours` ago (rounded down to 2 h) to now; returns (start_ms, blocks, end_ms)."""
    now_ms = int(time.time() * 1000)
    start_ms = (now_ms - hours * HOUR_MS) // (2 * HOUR_MS) * (2 * HOUR_MS)
    old_end = now_ms // (2 * HOUR_MS) * (2 * HOUR_MS)
    n_steps = (now_ms + 2 * HOUR_MS - start_ms) // fleet_tsdb.STEP_MS
    t0 = time.monotonic()
    classes = class_arrays(model, n_steps, start_ms)
    rng = np.random.default_rng(11)
    jitter = rng.choice(np.array([-2, -1, 0, 0, 0, 1, 2]), size=n_steps)
    n_nodes = len(node_class)
    offsets = (np.arange(n_nodes) * 7919 % 15) * 2000 + 5
    fleet = fleet_tsdb.Fleet(classes, node_class, offsets, node_labels, node_series_labels, start_ms, jitter)
    writer = fleet_tsdb.Writer(fleet, log=log)
    log(f"  series values and index prepared ({time.monotonic() - t0:.0f} s)")
    blocks = []
    layout = fleet_tsdb.block_layout(start_ms, old_end, old_end)
    for i, (a, b) in enumerate(layout):
        blocks.append(writer.write_block(data_dir, a, b, i))
    end_ms = int(time.time() * 1000) // fleet_tsdb.STEP_MS * fleet_tsdb.STEP_MS
    if end_ms > old_end:
        blocks.append(writer.write_block(data_dir, old_end, end_ms, len(layout)))
    return start_ms, blocks, end_ms, writer.n_series


def write_prometheus_config(d, n_nodes, serve_port, prom_port, rules_dir, extra_rules):
    rules = d / "rules"
    rules.mkdir()
    for path in sorted(Path(rules_dir).glob("*.rules.yml")):
        shutil.copy(path, rules / path.name)
    for path in extra_rules:
        shutil.copy(path, rules / ("proposal-" + Path(path).name))
    targets = [{"targets": [f"127.0.0.1:{serve_port}"],
                "labels": {"instance": node_name(n), "__param_node": str(n), "namespace": "imds-exporter",
                           "pod": node_pod(n), "view": "host"}} for n in range(n_nodes)]
    (d / "targets.json").write_text(json.dumps(targets))
    (d / "prometheus.yml").write_text(
        "# Written by bench/fleet.py: the bundled scrape settings (deploy/prometheus/prometheus.yml)\n"
        "global:\n  scrape_interval: 30s\n  scrape_timeout: 10s\n  evaluation_interval: 30s\n"
        f"rule_files:\n  - {rules}/*.rules.yml\n"
        "scrape_configs:\n"
        "  - job_name: imds\n"
        f"    file_sd_configs:\n      - files: ['{d / 'targets.json'}']\n"
        "  - job_name: prometheus\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{prom_port}']\n")
    return d / "prometheus.yml"


def proc_memory(pid):
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[k] = int(v.split()[0]) * 1024
    return out


def sample_rules(base, seconds, min_evals, max_seconds, poll=5.0):
    """Per group, the evaluation time of each distinct evaluation (what
    prometheus_rule_group_last_duration_seconds reads), and per rule its evaluation times and
    active alerts; over `seconds`, longer (up to max_seconds) until every group has min_evals."""
    groups, rules, first_seen = {}, {}, {}
    last_doc = None
    t0 = time.monotonic()
    while True:
        _, doc, err = api(base, "/api/v1/rules", {}, timeout=120)
        if doc:
            for g in doc["data"]["groups"]:
                key = f"{Path(g['file']).name}: {g['name']}"
                first_seen.setdefault(key, {})
                if g.get("lastEvaluation", "").startswith("0001"):
                    continue
                if g["lastEvaluation"] in groups.setdefault(key, {}):
                    continue
                groups[key][g["lastEvaluation"]] = g["evaluationTime"]
                for i, r in enumerate(g["rules"]):
                    name = r.get("name") + (f" ({r['labels']['severity']})" if r.get("labels", {}).get("severity") else "")
                    rr = rules.setdefault((key, i), {"group": key, "rule": name, "times": [], "alerts": []})
                    rr["times"].append(r.get("evaluationTime", 0.0))
                    rr["alerts"].append(len(r.get("alerts", [])))
        elapsed = time.monotonic() - t0
        last_doc = doc or last_doc
        enough = first_seen and all(len(groups.get(k, {})) >= min_evals for k in first_seen)
        if elapsed >= max_seconds or (elapsed >= seconds and enough):
            break
        time.sleep(poll)
    # A group that finished no evaluation: the rules it has evaluated so far, as they stand.
    for g in (last_doc or {"data": {"groups": []}})["data"]["groups"]:
        key = f"{Path(g['file']).name}: {g['name']}"
        if groups.get(key):
            continue
        for i, r in enumerate(g["rules"]):
            if r.get("evaluationTime"):
                name = r.get("name") + (f" ({r['labels']['severity']})" if r.get("labels", {}).get("severity") else "")
                rules[(key, i)] = {"group": key, "rule": name + " (unfinished group)", "times": [r["evaluationTime"]],
                                   "alerts": [len(r.get("alerts", []))]}
    return {k: list(groups.get(k, {}).values()) for k in first_seen}, list(rules.values()), time.monotonic() - t0


def run_queries(base, queries, variables, end_s, ranges, reps):
    results = []
    for range_name, range_s in ranges:
        reps_here = reps[range_name]
        for q in queries:
            expr, step = grafana_params(q, range_s)
            start = (end_s - range_s) // step * step
            end = end_s // step * step
            times, err, n_series, samples = [], None, None, None
            for _ in range(reps_here):
                if q["instant"]:
                    secs, doc, err = api(base, "/api/v1/query", {"query": expr, "time": end_s, "stats": "all",
                                                                 "timeout": f"{QUERY_TIMEOUT_S}s"})
                else:
                    secs, doc, err = api(base, "/api/v1/query_range",
                                         {"query": expr, "start": start, "end": end, "step": step, "stats": "all",
                                          "timeout": f"{QUERY_TIMEOUT_S}s"})
                times.append(secs)
                if err:
                    break
                n_series = len(doc["data"]["result"]) if isinstance(doc["data"]["result"], list) else 1
                samples = doc["data"].get("stats", {}).get("samples", {}).get("totalQueryableSamples")
                if secs > SLOW_ONCE_S:
                    break  # slow enough that one measurement tells; the run stays bounded
            results.append({"range": range_name, "title": q["title"], "type": q["type"], "ref": q["ref"],
                            "instant": q["instant"], "step": step, "expr": expr, "times": times,
                            "median": statistics.median(times), "max": max(times), "error": err,
                            "series": n_series, "samples": samples, "proposal": q.get("proposal")})
        for v in variables:
            match = substitute(v["match"], dashboard_values(".*", rate_interval="120s", interval="30s"))
            times, err, n = [], None, None
            for _ in range(reps_here):
                secs, doc, err = api(base, f"/api/v1/label/{v['label']}/values",
                                     {"match[]": match, "start": end_s - range_s, "end": end_s})
                times.append(secs)
                if err:
                    break
                n = len(doc["data"])
            results.append({"range": range_name, "title": f"variable ${v['name']}", "type": "variable", "ref": "",
                            "instant": False, "step": None, "expr": f"label_values({match}, {v['label']})",
                            "times": times, "median": statistics.median(times), "max": max(times), "error": err,
                            "series": n, "samples": None, "proposal": None})
        log(f"  queries over {range_name}: slowest "
            + ", ".join(f"{r['title']} {r['median']:.2f} s" for r in sorted(
                [r for r in results if r["range"] == range_name], key=lambda r: -r["median"])[:3]))
    return results


def run_size(n_nodes, model, args, workdir, binary):
    d = workdir / f"n{n_nodes}"
    if d.exists():
        shutil.rmtree(d)
    data = d / "data"
    data.mkdir(parents=True)
    res = {"nodes": n_nodes, "stages": {}, "load": {}}
    node_class, down = assign(model, n_nodes)
    res["classes"] = {c["name"]: int((node_class == i).sum()) for i, c in enumerate(model["classes"])}
    res["down"] = len(down)
    log(f"{n_nodes:,} nodes: writing {args.hours} h of history (load {loadavg()})")
    t0 = time.monotonic()
    res["load"]["history"] = loadavg()
    start_ms, blocks, end_ms, n_series = write_history(model, node_class, data, args.hours)
    res["stages"]["history_s"] = time.monotonic() - t0
    res["blocks"] = blocks
    res["history_series"] = n_series
    res["history_hours"] = (end_ms - start_ms) / HOUR_MS
    res["tsdb_bytes"] = sum(b["bytes"] for b in blocks)
    (d / "assign.json").write_text(json.dumps({"node_class": node_class.tolist(), "down": down}))
    model_path = workdir / "model.json"

    serve_port, prom_port = free_port(), free_port()
    server = spawn([sys.executable, str(ROOT / "bench" / "fleet_serve.py"), "--model", str(model_path),
                    "--assign", str(d / "assign.json"), "--start-ms", str(start_ms), "--port", str(serve_port)],
                   d / "serve.log")
    config = write_prometheus_config(d, n_nodes, serve_port, prom_port, args.rules_dir, args.extra_rules)
    t0 = time.monotonic()
    started = time.time()
    prom = spawn([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data}",
                  f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], d / "prometheus.log")
    base = f"http://127.0.0.1:{prom_port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if prom.poll() is not None or server.poll() is not None:
                raise RuntimeError(f"prometheus or fleet_serve exited: {(d / 'prometheus.log').read_text()[-2000:]}"
                                   f"{(d / 'serve.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Prometheus not ready after 300 s")
            time.sleep(1)
        res["stages"]["prometheus_ready_s"] = time.monotonic() - t0
        while True:
            _, doc, _ = api(base, "/api/v1/query", {"query": f'count(timestamp(up{{job="imds"}}) > {started:.0f})'},
                            timeout=30)
            have = int(float(doc["data"]["result"][0]["value"][1])) if doc and doc["data"]["result"] else 0
            if have >= n_nodes:
                break
            if time.monotonic() > deadline + 120:
                raise RuntimeError(f"only {have} of {n_nodes} targets scraped")
            time.sleep(2)
        res["stages"]["all_scraped_s"] = time.monotonic() - t0
        # The history is there: every node's runs counter 12 h ago, read from the blocks.
        _, doc, _ = api(base, "/api/v1/query", {"query": 'count(imds_probe_runs_total{probe="imds"} offset 12h)'})
        res["history_nodes_12h_ago"] = int(float(doc["data"]["result"][0]["value"][1])) if doc and doc["data"]["result"] else 0
        if res["history_nodes_12h_ago"] != n_nodes:
            raise RuntimeError(f"the history has {res['history_nodes_12h_ago']} nodes 12 h ago, not {n_nodes}")
        log(f"  Prometheus ready after {res['stages']['prometheus_ready_s']:.0f} s, every target scraped after "
            f"{res['stages']['all_scraped_s']:.0f} s; warm-up {args.warmup} s (load {loadavg()})")
        time.sleep(args.warmup)
        res["load"]["rules"] = loadavg()
        t1 = time.monotonic()
        evals, per_rule, sampled = sample_rules(base, args.live, args.min_evals, args.live + args.live_extra)
        res["stages"]["rules_s"] = time.monotonic() - t1
        res["rules"] = {g: {"evals": v, "median": statistics.median(v) if v else None, "max": max(v) if v else None,
                            "sampled_s": sampled} for g, v in sorted(evals.items())}
        _, doc, _ = api(base, "/api/v1/query", {"query": "sum by (rule_group) (prometheus_rule_group_iterations_missed_total)"})
        res["iterations_missed"] = {r["metric"].get("rule_group", ""): float(r["value"][1])
                                    for r in (doc["data"]["result"] if doc else [])}
        res["per_rule"] = [dict(r, median=statistics.median(r["times"]), max=max(r["times"]),
                                alerts_max=max(r["alerts"])) for r in per_rule]
        for g, r in res["rules"].items():
            log(f"  rule group {g}: median {fmt_s(r['median'])}, max {fmt_s(r['max'])} "
                f"({len(r['evals'])} evaluations in {r['sampled_s']:.0f} s)")
        for r in sorted(res["per_rule"], key=lambda r: -r["median"])[:5]:
            log(f"    {r['rule']}: median {r['median'] * 1000:.0f} ms, {r['alerts_max']} alerts")
        _, doc, _ = api(base, "/api/v1/status/tsdb", {}, timeout=60)
        res["head_series"] = doc["data"]["headStats"]["numSeries"] if doc else None
        res["memory"] = proc_memory(prom.pid)
        res["load"]["memory"] = loadavg()
        _, doc, _ = api(base, "/api/v1/query", {"query": 'sum(scrape_samples_scraped{job="imds"}) / count(up{job="imds"} == 1)'})
        res["series_per_node"] = float(doc["data"]["result"][0]["value"][1]) if doc and doc["data"]["result"] else None
        log(f"  head series {res['head_series']:,}, RSS {res['memory']['VmRSS'] / 2**20:,.0f} MiB "
            f"(anon {res['memory']['RssAnon'] / 2**20:,.0f}, file {res['memory']['RssFile'] / 2**20:,.0f}); "
            f"load {res['load']['memory']}")
        queries, variables = dashboard_queries(args.dashboard)
        for extra in args.extra_queries:
            for q in json.loads(Path(extra).read_text()):
                queries.append(dict(q, proposal=True))
        t0 = time.monotonic()
        res["load"]["queries"] = loadavg()
        end_s = int(time.time())
        res["queries"] = run_queries(base, queries, variables, end_s, [("1h", 3600), ("24h", 86400)],
                                     {"1h": args.reps, "24h": args.reps_24h})
        res["stages"]["queries_s"] = time.monotonic() - t0
        res["load"]["after"] = loadavg()
        res["memory_after_queries"] = proc_memory(prom.pid)
    finally:
        stop(prom, timeout=60)
        stop(server)
    if not args.keep:
        shutil.rmtree(d, ignore_errors=True)
    return res


# ------------------------------------------------------------------------------------ report
def fmt_s(x):
    return "-" if x is None else (f"{x * 1000:,.0f} ms" if x < 1 else f"{x:,.2f} s")


def fmt_error(err):
    if "timeout" in err or "deadline" in err or "timed out" in err:
        return f"> {QUERY_TIMEOUT_S} s (timeout)"
    if "too many samples" in err:
        return "fails: too many samples"
    return "error"


def markdown(run):
    sizes = run["sizes"]
    cols = [f"{s['nodes']:,} nodes" for s in sizes]
    lines = [f"Run of `{run['command']}` on {run['date']}, revision `{run['revision']}` ({run['seconds'] / 60:.0f} min; "
             f"Prometheus {run['prometheus']}; {run['history_hours']} h of history at a 30 s scrape interval, then "
             f"{run['warmup']} s of warm-up and {run['live']} s of rule evaluations live; queries {run['reps']} times "
             f"over 1 h and {run['reps_24h']} times over 24 h, medians).", ""]
    hdr = "| measurement | " + " | ".join(cols) + " | target | met? |"
    lines += [hdr, "|---|" + "---|" * len(cols) + "---|---|"]

    def row(name, vals, target="-", met="-"):
        lines.append(f"| {name} | " + " | ".join(vals) + f" | {target} | {met} |")

    row("series per node (the exporter's exposition)", [f"{s['series_per_node']:.0f}" if s.get("series_per_node") else "-" for s in sizes])
    row("head series (`prometheus_tsdb_head_series`)", [f"{s['head_series']:,}" for s in sizes])
    row("Prometheus RSS after the rule evaluations (MiB)", [f"{s['memory']['VmRSS'] / 2**20:,.0f}" for s in sizes])
    row("of which anonymous / file-backed (MiB)", [f"{s['memory']['RssAnon'] / 2**20:,.0f} / {s['memory']['RssFile'] / 2**20:,.0f}" for s in sizes])
    row("Prometheus RSS after the dashboard queries (MiB)", [f"{s['memory_after_queries']['VmRSS'] / 2**20:,.0f}" for s in sizes])
    row("TSDB blocks for the history (GiB on disk)", [f"{s['tsdb_bytes'] / 2**30:.2f}" for s in sizes])
    groups = sorted({g for s in sizes for g in s["rules"]})
    for g in groups:
        vals = []
        for s in sizes:
            r = s["rules"].get(g)
            if not r:
                vals.append("-")
            elif not r["evals"]:
                vals.append(f"none finished in {r['sampled_s']:.0f} s")
            else:
                vals.append(f"{fmt_s(r['median'])} / {fmt_s(r['max'])}")
        last = sizes[-1]["rules"].get(g)
        met = "-" if not last else ("yes" if last["evals"] and last["max"] < RULE_TARGET_S else "**no**")
        row(f"rule group `{g.split(': ', 1)[1]}` evaluation, median / max", vals, "< 1 s", met)
    for rng in ("1h", "24h"):
        vals = []
        for s in sizes:
            qs = [q for q in s["queries"] if q["range"] == rng and not q.get("proposal")]
            worst = max(qs, key=lambda q: (q["error"] is not None, q["median"]))
            vals.append(f"{fmt_s(worst['median'])} ({worst['title']})" + (" error" if worst["error"] else ""))
        last = [q for q in sizes[-1]["queries"] if q["range"] == rng and not q.get("proposal")]
        over = [q for q in last if q["error"] or q["median"] >= QUERY_TARGET_S]
        target = "< 2 s" if rng == "1h" else "-"
        met = ("yes" if not over else f"**no** ({len(over)} of {len(last)})") if rng == "1h" else "-"
        row(f"slowest fleet-dashboard query over {rng} (median)", vals, target, met)
        row(f"fleet-dashboard queries over {rng} at >= 2 s or failing", [
            str(sum(1 for q in s["queries"] if q["range"] == rng and not q.get("proposal") and (q["error"] or q["median"] >= QUERY_TARGET_S)))
            + f" of {sum(1 for q in s['queries'] if q['range'] == rng and not q.get('proposal'))}" for s in sizes])
    row("load average (1, 5, 15 min) during the rule evaluations", [s["load"]["rules"] for s in sizes])
    row("load average during the queries", [s["load"]["queries"] for s in sizes])
    row("rule evaluations missed (`prometheus_rule_group_iterations_missed_total`, all groups)", [
        f"{sum(s.get('iterations_missed', {}).values()):.0f}" if "iterations_missed" in s else "-" for s in sizes])
    row("time to write the history / to Prometheus ready on it", [
        f"{s['stages']['history_s']:.0f} s / {s['stages']['prometheus_ready_s']:.0f} s" for s in sizes])
    lines.append("")
    # The rules that cost the most at the largest fleet.
    big = sizes[-1]
    lines += [f"The slowest rules (medians of their evaluation times; alerts = the most active at once), by fleet size:", ""]
    lines += ["| rule (group) | " + " | ".join(cols) + " | alerts at " + cols[-1] + " |",
              "|---|" + "---|" * len(cols) + "---|"]
    top = sorted(big.get("per_rule", []), key=lambda r: -r["median"])[:8]
    for r in top:
        cells = []
        for s in sizes:
            m = [x for x in s.get("per_rule", []) if x["group"] == r["group"] and x["rule"] == r["rule"]]
            cells.append(fmt_s(m[0]["median"]) if m else "-")
        lines.append(f"| {r['rule']} (`{r['group'].split(': ', 1)[1]}`) | " + " | ".join(cells) + f" | {r['alerts_max']:,} |")
    lines.append("")
    # Per query: every panel query, slowest first by the largest fleet's 1 h latency.
    lines += ["Every query of `dashboards/imds-fleet.json` (medians; `instant` = stat or table panel; the step is "
              "the 1 h / 24 h one; samples = `totalQueryableSamples` at the largest fleet over 24 h):", ""]
    hdr = "| panel (query) | step 1 h / 24 h | " + " | ".join(f"1 h, {c}" for c in cols) + " | " + " | ".join(
        f"24 h, {c}" for c in cols) + " | samples read, 24 h |"
    lines += [hdr, "|---|---|" + "---|" * (2 * len(cols)) + "---|"]
    last = sizes[-1]
    keys = []
    for q in last["queries"]:
        k = (q["title"], q["ref"], bool(q.get("proposal")))
        if k not in keys:
            keys.append(k)

    def find(s, rng, k):
        for q in s["queries"]:
            if q["range"] == rng and (q["title"], q["ref"], bool(q.get("proposal"))) == k:
                return q
        return None

    keys.sort(key=lambda k: -(find(last, "1h", k) or {"median": 0})["median"])
    for k in keys:
        q1, q24 = find(last, "1h", k), find(last, "24h", k)
        name = k[0] + (f" ({k[1]})" if k[1] not in ("A", "") else "") + (" [proposal]" if k[2] else "")
        kind = "instant" if q1 and q1["instant"] else ("variable" if q1 and q1["type"] == "variable" else "range")
        steps = f"{q1['step']} s / {q24['step']} s" if q1 and q1["step"] else "-"
        cells = []
        for rng in ("1h", "24h"):
            for s in sizes:
                q = find(s, rng, k)
                cells.append("-" if not q else (fmt_error(q["error"]) if q["error"] else fmt_s(q["median"])))
        samples = f"{q24['samples']:,}" if q24 and q24.get("samples") else "-"
        lines.append(f"| {name} ({kind}) | {steps} | " + " | ".join(cells) + f" | {samples} |")
    errors = [(s["nodes"], q) for s in sizes for q in s["queries"] if q["error"]]
    if errors:
        lines += ["", "Errors: " + "; ".join(f"{n:,} nodes, {q['range']}, {q['title']}: `{q['error']}`" for n, q in errors)]
    lines += ["", "Nodes per class (largest fleet): " + ", ".join(f"{k} {v:,}" for k, v in last["classes"].items())
              + f"; exporters down in the live part: {last['down']:,}."]
    return "\n".join(lines)


def update_benchmarks_md(path, body):
    text = path.read_text()
    if MARK_BEGIN not in text or MARK_END not in text:
        raise SystemExit(f"{path} has no {MARK_BEGIN} ... {MARK_END} markers")
    head, rest = text.split(MARK_BEGIN, 1)
    _, tail = rest.split(MARK_END, 1)
    path.write_text(f"{head}{MARK_BEGIN}\n{body}\n{MARK_END}{tail}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "imds_exporter"))
    ap.add_argument("--nodes", default="1000,5000,10000", help="fleet sizes, comma-separated")
    ap.add_argument("--hours", type=int, default=24, help="hours of history (rounded up to 2 h)")
    ap.add_argument("--runs", type=int, default=20, help="probe runs recorded per class")
    ap.add_argument("--warmup", type=int, default=120, help="seconds of scraping before rules are sampled")
    ap.add_argument("--live", type=int, default=300, help="seconds over which rule evaluations are sampled")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each query over 1 h")
    ap.add_argument("--reps-24h", type=int, default=2, help="repetitions of each query over 24 h")
    ap.add_argument("--min-evals", type=int, default=4,
                    help="sample rules longer (up to --live-extra) until every group has this many evaluations")
    ap.add_argument("--live-extra", type=int, default=300, help="at most this many more seconds for --min-evals")
    ap.add_argument("--rules-dir", default=str(ROOT / "alerts"), help="the rule files to load (*.rules.yml)")
    ap.add_argument("--dashboard", default=str(ROOT / "dashboards" / "imds-fleet.json"), help="the dashboard whose queries are run")
    ap.add_argument("--extra-rules", action="append", default=[], help="a rule file loaded beside the bundled ones (proposals)")
    ap.add_argument("--extra-queries", action="append", default=[],
                    help='a JSON list of {"title", "type", "ref", "expr", "instant", "max_data_points"} (proposals)')
    ap.add_argument("--workdir", help="where the TSDB goes (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep each fleet's TSDB and logs")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "fleet"), help="results path prefix (.json, .md)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report (.md, and BENCHMARKS.md unless --no-write) from the results' .json, measuring nothing")
    args = ap.parse_args()
    if args.report_only:
        md = markdown(json.loads(Path(args.results + ".json").read_text()))
        Path(args.results + ".md").write_text(md + "\n")
        if not args.no_write:
            update_benchmarks_md(ROOT / "BENCHMARKS.md", md)
        return
    sizes = [int(x) for x in args.nodes.split(",")]
    t_start = time.monotonic()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="imds-fleet."))
    workdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log(f"workdir {workdir}; recording {len(fleet_model.MIX)} classes from real exporters ({args.runs} runs each)")
    model = fleet_model.record(args.binary, args.runs, workdir, log=log)
    (workdir / "model.json").write_text(json.dumps(model))
    prom_version = subprocess.run([PROMETHEUS, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    results = []
    for n in sizes:
        results.append(run_size(n, model, args, workdir, args.binary))
        run = {"command": "bench/fleet" + ("" if sys.argv[1:] == [] else " " + " ".join(sys.argv[1:])),
               "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "revision": revision + ("-dirty" if dirty else ""), "prometheus": prom_version.replace("prometheus, version ", ""),
               "seconds": time.monotonic() - t_start, "history_hours": args.hours, "warmup": args.warmup, "live": args.live,
               "reps": args.reps, "reps_24h": args.reps_24h, "machine": {"nproc": os.cpu_count(), "memory_gib": round(
                   os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
               "series_per_node_recorded": {c["name"]: len(c["series"]) for c in model["classes"]}, "sizes": results}
        md = markdown(run)
        Path(args.results + ".json").write_text(json.dumps(run, indent=1))
        Path(args.results + ".md").write_text(md + "\n")
    if not args.no_write:
        update_benchmarks_md(ROOT / "BENCHMARKS.md", md)
    log(f"done in {(time.monotonic() - t_start) / 60:.0f} min; {args.results}.{{json,md}}"
        + ("" if args.no_write else " and BENCHMARKS.md"))
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
