#!/usr/bin/env python3
"""The side-by-side benchmark behind BENCHMARKS.md: imds_exporter against blackbox_exporter
(HTTP probes of the simulator's credential URL) and node_exporter (timex, ntp), on loopback.

Run it through `bench/run`, which installs the tools, builds the release binary and makes the
venv. Every process this script starts is on 127.0.0.1, is killed on exit (by its pid), and every
loop is bounded in count and time. The simulator stands in for IMDS; chronyd under faketime
stands in for the Amazon Time Sync Service. Nothing non-loopback is ever contacted.

Sections (`--only` picks some): footprint (RSS and CPU per probe run), scrape (/metrics under
wrk), latency (accuracy under a 50 ms delay), ntp (offset accuracy), startup, series.
Results go to bench/results/latest.{json,md} and into BENCHMARKS.md between its markers. A run of
some sections only writes bench/results/latest-<sections>.{json,md} and replaces just those
sections' tables in BENCHMARKS.md, each with a line naming the command, date and revision.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import http.client
import json
import os
import platform
import random
import re
import shutil
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROLE = "imds-exporter-demo-role"
CREDENTIALS_PATH = f"/latest/meta-data/iam/security-credentials/{ROLE}"
LOOPBACK = "127.0.0.1"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
CHRONYD = "/usr/sbin/chronyd"
NTPDIG = "/usr/bin/ntpdig"  # Debian's `sntp` is NTPsec's ntpdig
SYSTEM_PYTHON = "/usr/bin/python3"  # ntpdig needs Debian's python3-ntp module
MARK_BEGIN = "<!-- bench:begin (written by bench/run; edit the notes outside these markers) -->"
MARK_END = "<!-- bench:end -->"

# ---------------------------------------------------------------------------------------------
# Processes: every one we start is remembered and killed by pid on exit.

_children: list[subprocess.Popen] = []


def spawn(argv: list[str], log: Path | None = None, **kw) -> subprocess.Popen:
    out = open(log, "wb") if log else subprocess.DEVNULL
    p = subprocess.Popen(
        argv, stdout=kw.pop("stdout", out), stderr=out, stdin=subprocess.DEVNULL,
        start_new_session=True, **kw,
    )
    _children.append(p)
    return p


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    # Each child leads its own process group (start_new_session), so the group is exactly what
    # we started: `faketime` runs chronyd as its child, and killing faketime alone would leave
    # chronyd behind.
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(p: subprocess.Popen) -> None:
    _signal_group(p, signal.SIGTERM)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _signal_group(p, signal.SIGKILL)
        p.wait(timeout=5)
    time.sleep(0.05)
    _signal_group(p, signal.SIGKILL)  # anything of the group that outlived its leader
    if p in _children:
        _children.remove(p)


def _cleanup(*_args) -> None:
    for p in list(_children):
        try:
            stop(p)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_cleanup)
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, lambda s, f: sys.exit(128 + s))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# /proc readings


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def rss_parts_kib(pid: int) -> dict:
    """VmRSS split into anonymous memory (heap, stacks) and file-backed pages (code, libraries)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("RssAnon", "RssFile", "RssShmem", "Threads"):
            out[key] = int(line.split()[1])
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# ---------------------------------------------------------------------------------------------
# HTTP and the exposition format


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(url: str) -> None:
    req = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_exposition(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def series_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.startswith("#"))


def metric(samples: dict, name: str, labels: str = "") -> float | None:
    return samples.get((name, labels))


def wait_until(cond, timeout: float, what: str, step: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = cond()
        except (OSError, http.client.HTTPException):
            v = None
        if v:
            return v
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


# ---------------------------------------------------------------------------------------------
# The programs under test


class Simulator:
    def __init__(self, binary: str, workdir: Path):
        self.proc = spawn(
            [binary, "simulate", "--listen", f"{LOOPBACK}:0", "--ntp-listen", f"{LOOPBACK}:0",
             "--log.level", "warn"],
            log=None, stdout=subprocess.PIPE,
        )
        self.endpoint = self.ntp = None
        deadline = time.monotonic() + 10
        while (self.endpoint is None or self.ntp is None) and time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            if m := re.match(r"IMDS simulator on (http://127\.0\.0\.1:\d+)", line):
                self.endpoint = m.group(1)
            if m := re.match(r"SNTP answerer on (127\.0\.0\.1:\d+)", line):
                self.ntp = m.group(1)
        if not self.endpoint or not self.ntp:
            raise RuntimeError("the simulator did not print its addresses")
        self.credentials_url = self.endpoint + CREDENTIALS_PATH

    def scenario(self, name: str) -> None:
        post(f"{self.endpoint}/_sim/scenario/{name}")


class Ours:
    """imds_exporter, always pointed at loopback endpoints."""

    def __init__(self, binary: str, sim: Simulator, workdir: Path, *extra: str,
                 ntp_server: str | None = None, log_level: str = "warn", name: str = "ours"):
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.log = workdir / f"{name}-{self.port}.log"
        self.argv = [
            binary, "--web.listen-address", f"{LOOPBACK}:{self.port}",
            "--imds.endpoint", sim.endpoint, "--ntp.server", ntp_server or sim.ntp,
            "--log.level", log_level, *extra,
        ]
        self.started = time.monotonic()
        self.proc = spawn(self.argv, log=self.log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ready(self) -> bool:
        return get(self.url + "/-/ready", timeout=1)[0] == 200

    def scrape(self) -> str:
        return get(self.url + "/metrics")[1].decode()

    def runs(self) -> float:
        return metric(parse_exposition(self.scrape()), "imds_probe_runs_total", '{probe="imds"}') or 0

    def wait_ready(self, timeout: float = 15) -> None:
        wait_until(self.ready, timeout, "imds_exporter /-/ready", step=0.005)


class Blackbox:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        config = workdir / "blackbox.yml"
        config.write_text(
            "modules:\n  http_2xx:\n    prober: http\n    timeout: 1s\n"
            "    http:\n      preferred_ip_protocol: ip4\n"
        )
        self.started = time.monotonic()
        self.proc = spawn(
            [BLACKBOX, f"--config.file={config}", f"--web.listen-address={LOOPBACK}:{self.port}",
             "--log.level=warn"],
            log=workdir / f"blackbox-{self.port}.log",
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 15) -> None:
        wait_until(lambda: get(self.url + "/-/healthy", timeout=1)[0] == 200, timeout,
                   "blackbox_exporter /-/healthy", step=0.005)

    def probe_path(self, target: str) -> str:
        return f"/probe?module=http_2xx&target={urllib.request.quote(target, safe='')}"


class NodeExporter:
    def __init__(self, workdir: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.started = time.monotonic()
        self.proc = spawn(
            [NODE_EXPORTER, f"--web.listen-address={LOOPBACK}:{self.port}", "--log.level=warn",
             *extra],
            log=workdir / f"node-{self.port}.log",
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 15) -> None:
        wait_until(lambda: get(self.url + "/metrics", timeout=2)[0] == 200, timeout,
                   "node_exporter /metrics", step=0.005)


def keepalive_requests(port: int, path: str, count: int, timeout: float = 300) -> list[bytes]:
    """`count` sequential GETs on one keep-alive connection (a Prometheus-less probe loop)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    bodies = []
    deadline = time.monotonic() + timeout
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} requests took longer than {timeout}s")
            conn.request("GET", path)
            r = conn.getresponse()
            bodies.append(r.read())
            if r.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {r.status}")
    finally:
        conn.close()
    return bodies


# ---------------------------------------------------------------------------------------------
# Statistics


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def percentile(xs, q: float):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def spread(xs) -> str:
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return ""
    m = statistics.median(xs)
    if not m:
        return ""
    return f"{(max(xs) - min(xs)) / abs(m) * 100:.0f}%"


def parse_duration(text: str) -> float:
    """A Rust `Duration` Debug string (`50.9ms`, `1.2s`, `950µs`, `12ns`) in seconds."""
    m = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", text)
    if not m:
        raise ValueError(text)
    scale = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    return float(m.group(1)) * scale


# ---------------------------------------------------------------------------------------------
# Sections


def section_footprint(ctx) -> dict:
    """RSS after start and after N probe runs; CPU per probe run."""
    n = ctx.runs
    reps = []
    for rep in range(ctx.reps):
        row = {"load_before": loadavg()}
        # Ours: an accelerated interval; the runs counter says how many runs were made.
        ours = Ours(ctx.binary, ctx.sim, ctx.workdir, "--imds.interval", ctx.interval)
        ours.wait_ready()
        row["ours_rss_start_kib"] = rss_kib(ours.pid)
        cpu0, runs0, t0 = cpu_seconds(ours.pid), ours.runs(), time.monotonic()
        deadline = t0 + 120
        runs = runs0
        while runs - runs0 < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"imds_exporter made only {runs - runs0} runs in 120s")
            time.sleep(0.2)
            runs = ours.runs()
        cpu1 = cpu_seconds(ours.pid)
        row["ours_rss_end_kib"] = rss_kib(ours.pid)
        row["ours_rss_parts"] = rss_parts_kib(ours.pid)
        row["ours_runs"] = runs - runs0
        row["ours_seconds"] = time.monotonic() - t0
        row["ours_cpu_per_run_us"] = (cpu1 - cpu0) / (runs - runs0) * 1e6
        stop(ours.proc)

        # blackbox_exporter: the same credential URL, one /probe after another on a keep-alive
        # connection (what a 1 ms scrape interval would do, without a Prometheus in between).
        bb = Blackbox(ctx.workdir)
        bb.wait_ready()
        path = bb.probe_path(ctx.sim.credentials_url)
        first = keepalive_requests(bb.port, path, 1)[0].decode()
        if metric(parse_exposition(first), "probe_success") != 1:
            raise RuntimeError(f"blackbox probe of the simulator failed:\n{first}")
        row["theirs_rss_start_kib"] = rss_kib(bb.pid)
        cpu0, t0 = cpu_seconds(bb.pid), time.monotonic()
        bodies = keepalive_requests(bb.port, path, n)
        cpu1 = cpu_seconds(bb.pid)
        row["theirs_rss_end_kib"] = rss_kib(bb.pid)
        row["theirs_rss_parts"] = rss_parts_kib(bb.pid)
        row["theirs_runs"] = n
        row["theirs_seconds"] = time.monotonic() - t0
        row["theirs_cpu_per_run_us"] = (cpu1 - cpu0) / n * 1e6
        row["theirs_failed_probes"] = sum(1 for b in bodies if b"probe_success 1" not in b)
        stop(bb.proc)
        row["load_after"] = loadavg()
        reps.append(row)
        ctx.say(f"footprint rep {rep + 1}: ours {row['ours_rss_end_kib']} KiB "
                f"{row['ours_cpu_per_run_us']:.0f} us/run; blackbox {row['theirs_rss_end_kib']} KiB "
                f"{row['theirs_cpu_per_run_us']:.0f} us/probe (load {row['load_before']:.2f})")
    return {"runs": n, "interval": ctx.interval, "reps": reps}


WRK_LINE = re.compile(r"^\s*(50|99)%\s+([0-9.]+)(us|ms|s)\s*$")


def run_wrk(url: str, ctx, pid: int | None = None, threads: int = 2, conns: int = 32) -> dict:
    cpu0 = cpu_seconds(pid) if pid else None
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{ctx.wrk_seconds}s", "--latency", url],
        capture_output=True, text=True, timeout=ctx.wrk_seconds + 30, check=True,
    ).stdout
    res = {}
    if m := re.search(r"(\d+) requests in", out):
        res["requests"] = int(m.group(1))
        if pid and res["requests"]:
            res["cpu_per_request_us"] = (cpu_seconds(pid) - cpu0) / res["requests"] * 1e6
    for line in out.splitlines():
        if m := WRK_LINE.match(line):
            scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(3)]
            res[f"p{m.group(1)}_ms"] = float(m.group(2)) * scale
        if line.startswith("Requests/sec:"):
            res["rps"] = float(line.split()[1])
        if "Non-2xx" in line or "Socket errors" in line:
            res.setdefault("errors", []).append(line.strip())
    return res


def section_scrape(ctx) -> dict:
    ours = Ours(ctx.binary, ctx.sim, ctx.workdir)  # default 30s interval: a scrape-time view
    bb = Blackbox(ctx.workdir)
    node = NodeExporter(ctx.workdir)
    for t in (ours, bb, node):
        t.wait_ready()
    # One probe so blackbox's own metrics are warm, as they would be in production.
    keepalive_requests(bb.port, bb.probe_path(ctx.sim.credentials_url), 1)
    targets = {"ours": ours.url + "/metrics", "blackbox": bb.url + "/metrics",
               "node": node.url + "/metrics"}
    size = {}
    for name, url in targets.items():
        body = get(url)[1]
        size[name] = {"bytes": len(body), "series": series_count(body.decode())}
    pids = {"ours": ours.pid, "blackbox": bb.pid, "node": node.pid}
    reps = []
    for rep in range(ctx.reps):
        row = {"load_before": loadavg()}
        for name, url in targets.items():
            row[name] = run_wrk(url, ctx, pids[name])
            # One scraper, one connection: what a Prometheus server does.
            row[name + "_c1"] = run_wrk(url, ctx, None, threads=1, conns=1)
        reps.append(row)
        ctx.say(f"scrape rep {rep + 1}: " + ", ".join(
            f"{k} {row[k].get('rps', 0):.0f} req/s p99 {row[k].get('p99_ms', 0):.2f} ms"
            for k in targets))
    for p in (ours, bb, node):
        stop(p.proc)
    return {"size": size, "reps": reps}


LOG_OK = re.compile(r'msg="IMDS request ok".*?phase=(\w+).*?duration=(\S+)')
LOG_FAIL = re.compile(r'msg="IMDS request failed"')
PHASES = ("token", "role", "credentials", "info", "identity", "imdsv1")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def histogram_buckets(samples: dict, name: str, phase: str) -> list[tuple[float, float]]:
    """The cumulative buckets (upper bound, count) of one phase of a histogram, sorted."""
    out = []
    for (n, labels), v in samples.items():
        if n != name + "_bucket":
            continue
        lbl = dict(LABEL.findall(labels))
        if lbl.get("phase") == phase and "le" in lbl:
            out.append((float(lbl["le"]), v))
    return sorted(out)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """PromQL's histogram_quantile over cumulative (upper bound, count) buckets: find the bucket
    holding rank q * count and interpolate linearly inside it (from 0 for the first bucket); in
    the +Inf bucket, the largest finite bound."""
    if len(buckets) < 2 or buckets[-1][0] != float("inf") or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    b = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    end, count = buckets[b]
    start = 0.0
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    if b == 0 and end <= 0:
        return end
    return start + (end - start) * (rank / count) if count else start


def section_latency(ctx) -> dict:
    delay = 0.050
    ctx.sim.scenario("slow?delay=50ms")
    reps = []
    try:
        for rep in range(ctx.reps):
            ours = Ours(ctx.binary, ctx.sim, ctx.workdir, "--imds.interval", "1ms",
                        log_level="trace", name="latency")
            ours.wait_ready(timeout=30)
            before = parse_exposition(ours.scrape())
            log_offset = ours.log.stat().st_size
            time.sleep(ctx.latency_seconds)
            after = parse_exposition(ours.scrape())
            stop(ours.proc)
            with open(ours.log, "rb") as f:
                f.seek(log_offset)
                lines = f.read().decode(errors="replace").splitlines()
            # The trace log: one `IMDS request ok phase=... duration=...` line per request.
            errors, by_phase = [], {}
            for line in lines:
                if m := LOG_OK.search(line):
                    e = parse_duration(m.group(2)) - delay
                    errors.append(e)
                    by_phase.setdefault(m.group(1), []).append(e)
            failures = sum(1 for line in lines if LOG_FAIL.search(line))
            phase_trace = {
                ph: {"count": len(es), "errors_ms": [round(e * 1e3, 4) for e in es],
                     "p50_error_ms": percentile(es, 0.5) * 1e3,
                     "p99_error_ms": percentile(es, 0.99) * 1e3}
                for ph, es in by_phase.items()
            }
            # The histogram, from the deltas of two scrapes: _sum/_count gives each phase's mean;
            # histogram_quantile of the bucket deltas is what a dashboard would read.
            means, quantiles = {}, {}
            name = "imds_request_duration_seconds"
            for phase in PHASES:
                lbl = f'{{phase="{phase}"}}'
                dc = (metric(after, name + "_count", lbl) or 0) - (
                    metric(before, name + "_count", lbl) or 0)
                ds = (metric(after, name + "_sum", lbl) or 0) - (
                    metric(before, name + "_sum", lbl) or 0)
                if dc > 0:
                    means[phase] = {"count": dc, "mean_error_ms": (ds / dc - delay) * 1e3}
                    b0 = dict(histogram_buckets(before, name, phase))
                    delta = [(le, c - b0.get(le, 0)) for le, c in histogram_buckets(after, name, phase)]
                    q50, q99 = histogram_quantile(0.5, delta), histogram_quantile(0.99, delta)
                    quantiles[phase] = {"q50_ms": q50 and q50 * 1e3, "q99_ms": q99 and q99 * 1e3}

            # blackbox: the same delay, probing the credential URL.
            bb = Blackbox(ctx.workdir)
            bb.wait_ready()
            bodies = keepalive_requests(bb.port, bb.probe_path(ctx.sim.credentials_url),
                                        ctx.latency_probes)
            stop(bb.proc)
            bb_request, bb_total = [], []
            for b in bodies:
                s = parse_exposition(b.decode())
                phases = sum(metric(s, "probe_http_duration_seconds", f'{{phase="{p}"}}') or 0
                             for p in ("resolve", "connect", "tls", "processing", "transfer"))
                bb_request.append(phases - delay)
                bb_total.append(metric(s, "probe_duration_seconds") - delay)
            row = {
                "samples": len(errors), "failures": failures,
                "errors_ms": [round(e * 1e3, 4) for e in errors],
                "theirs_errors_ms": [round(e * 1e3, 4) for e in bb_request],
                "p50_error_ms": percentile(errors, 0.5) * 1e3 if errors else None,
                "p99_error_ms": percentile(errors, 0.99) * 1e3 if errors else None,
                "phase_trace": phase_trace,
                "phase_mean_error_ms": means,
                "phase_histogram_quantile": quantiles,
                "theirs_samples": len(bodies),
                "theirs_p50_error_ms": percentile(bb_request, 0.5) * 1e3,
                "theirs_p99_error_ms": percentile(bb_request, 0.99) * 1e3,
                "theirs_total_p50_error_ms": percentile(bb_total, 0.5) * 1e3,
                "theirs_total_p99_error_ms": percentile(bb_total, 0.99) * 1e3,
            }
            reps.append(row)
            ctx.say(f"latency rep {rep + 1}: ours p50 {row['p50_error_ms']:+.3f} ms "
                    f"p99 {row['p99_error_ms']:+.3f} ms over {len(errors)} requests ("
                    + ", ".join(f"{ph} {v['p50_error_ms']:+.3f}/{v['p99_error_ms']:+.3f}"
                                for ph, v in phase_trace.items())
                    + f"); blackbox p50 {row['theirs_p50_error_ms']:+.3f} ms "
                    f"p99 {row['theirs_p99_error_ms']:+.3f} ms")
    finally:
        ctx.sim.scenario("healthy")
    return {"delay_ms": delay * 1e3, "reps": reps}


NTP_CLIENTS = ("ours", "ntplib", "sntp", "node_exporter")


def ntp_session(ctx, offset: float, n: int, rep: int) -> dict:
    """One repetition of the clock-offset comparison: a fresh chronyd under faketime on a fresh
    loopback port, `n` samples from each client, then chronyd is stopped."""
    import ntplib  # from the venv made by bench/run

    tmp = Path(tempfile.mkdtemp(prefix=f"chrony-{rep}-", dir=ctx.workdir))
    port = free_port(socket.SOCK_DGRAM)
    conf = tmp / "chrony.conf"
    conf.write_text(
        f"port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\n"
        f"pidfile {tmp}/chronyd.pid\ndriftfile {tmp}/drift\n"
    )
    row = {"load_before": loadavg(), "port": port}
    t0 = time.monotonic()
    # -x: never touch the system clock; faketime shifts only chronyd's view of time.
    chrony = spawn(["faketime", "-f", f"+{offset}s", CHRONYD, "-x", "-d", "-u", "root", "-f",
                    str(conf)], log=tmp / "chronyd.log")
    try:
        client = ntplib.NTPClient()

        def ntplib_offset():
            return client.request(LOOPBACK, port=port, version=4, timeout=1).offset

        def answering():
            try:
                return abs(ntplib_offset() - offset) < 0.5
            except ntplib.NTPException:
                return False

        wait_until(answering, 30, "chronyd to answer", step=0.2)

        ntplib_samples = []
        for _ in range(n):
            ntplib_samples.append(ntplib_offset())
            time.sleep(0.2)
        row["ntplib"] = ntplib_samples

        sntp_samples = []
        if Path(NTPDIG).exists() and Path(SYSTEM_PYTHON).exists():
            # ntpdig has no port option: run it with getaddrinfo redirected to chronyd's port.
            wrapper = (
                "import socket,sys\n"
                "_g=socket.getaddrinfo\n"
                f"socket.getaddrinfo=lambda h,p,*a,**k:_g(h,{port} if p==123 else p,*a,**k)\n"
                f"sys.argv=['sntp','-j','-t','2','{LOOPBACK}']\n"
                f"exec(compile(open('{NTPDIG}').read(),'{NTPDIG}','exec'))\n"
            )
            for _ in range(n):
                out = subprocess.run([SYSTEM_PYTHON, "-c", wrapper], capture_output=True,
                                     text=True, timeout=10).stdout
                try:
                    sntp_samples.append(float(json.loads(out)["offset"]))
                except (ValueError, KeyError):
                    pass
                time.sleep(0.2)
        row["sntp"] = sntp_samples

        ours = Ours(ctx.binary, ctx.sim, ctx.workdir, "--ntp.interval", "500ms",
                    ntp_server=f"{LOOPBACK}:{port}", name=f"ntp-{rep}")
        try:
            ours.wait_ready()
            lbl = f'{{server="{LOOPBACK}:{port}"}}'
            ours_samples = []
            last_runs = None
            deadline = time.monotonic() + 60
            while len(ours_samples) < n and time.monotonic() < deadline:
                s = parse_exposition(ours.scrape())
                runs = metric(s, "imds_probe_runs_total", '{probe="ntp"}')
                value = metric(s, "imds_ntp_offset_seconds", lbl)
                if value is not None and runs != last_runs:
                    ours_samples.append(value)
                    last_runs = runs
                time.sleep(0.1)
        finally:
            stop(ours.proc)
        row["ours"] = ours_samples

        if Path(NODE_EXPORTER).exists():
            node = NodeExporter(ctx.workdir, "--collector.disable-defaults", "--collector.ntp",
                                f"--collector.ntp.server={LOOPBACK}",
                                f"--collector.ntp.server-port={port}",
                                "--collector.ntp.server-is-local")
            try:
                node.wait_ready()
                node_samples = []
                for _ in range(n):
                    s = parse_exposition(get(node.url + "/metrics")[1].decode())
                    v = metric(s, "node_ntp_offset_seconds")
                    if v is not None:
                        node_samples.append(v)
                    time.sleep(0.2)
            finally:
                stop(node.proc)
            row["node_exporter"] = node_samples
        else:
            row["node_exporter"] = []
    finally:
        stop(chrony)
    row["seconds"] = time.monotonic() - t0
    row["load_after"] = loadavg()
    for k in NTP_CLIENTS:
        if row[k]:
            row[f"{k}_median_error_ms"] = (median(row[k]) - offset) * 1e3
    return row


def section_ntp(ctx) -> dict:
    """--reps repetitions, each a fresh chronyd-under-faketime session with `n` samples per
    client; per client, the median over repetitions of each repetition's median error and the
    range of those medians."""
    offset = 2.5
    n = 7  # samples per client and repetition
    reps = []
    for rep in range(ctx.reps):
        row = ntp_session(ctx, offset, n, rep)
        reps.append(row)
        ctx.say(f"ntp rep {rep + 1} ({row['seconds']:.1f} s, load {row['load_before']:.2f}): "
                + ", ".join(f"{k} {row.get(k + '_median_error_ms', float('nan')):+.3f} ms"
                            for k in NTP_CLIENTS))
    result = {"offset_s": offset, "samples_per_rep": n, "reps": reps}
    for k in NTP_CLIENTS:
        meds = [x.get(f"{k}_median_error_ms") for x in reps]
        meds = [m for m in meds if m is not None]
        if meds:
            result[f"{k}_median_error_ms"] = median(meds)
            result[f"{k}_min_error_ms"] = min(meds)
            result[f"{k}_max_error_ms"] = max(meds)
            result[f"{k}_reps"] = len(meds)
            result[f"{k}_samples"] = sum(len(x[k]) for x in reps)
    ctx.say("ntp, medians over repetitions: " + ", ".join(
        f"{k} {result.get(k + '_median_error_ms', float('nan')):+.3f} ms" for k in NTP_CLIENTS))
    return result


def section_startup(ctx) -> dict:
    reps = []
    for rep in range(ctx.reps):
        row = {}
        t0 = time.monotonic()
        ours = Ours(ctx.binary, ctx.sim, ctx.workdir)
        wait_until(ours.ready, 15, "ready", step=0.001)
        row["ours_ready_ms"] = (time.monotonic() - t0) * 1e3
        wait_until(lambda: ours.runs() >= 1, 15, "first run", step=0.001)
        row["ours_metrics_ms"] = (time.monotonic() - t0) * 1e3
        stop(ours.proc)

        t0 = time.monotonic()
        bb = Blackbox(ctx.workdir)
        wait_until(lambda: get(bb.url + "/-/ready", timeout=1)[0] == 200, 15, "bb", step=0.001)
        row["theirs_ready_ms"] = (time.monotonic() - t0) * 1e3
        path = bb.probe_path(ctx.sim.credentials_url)
        wait_until(lambda: b"probe_success 1" in get(bb.url + path, timeout=2)[1], 15, "probe",
                   step=0.001)
        row["theirs_metrics_ms"] = (time.monotonic() - t0) * 1e3
        stop(bb.proc)

        t0 = time.monotonic()
        node = NodeExporter(ctx.workdir)
        wait_until(lambda: get(node.url + "/metrics", timeout=2)[0] == 200, 15, "node",
                   step=0.001)
        row["node_metrics_ms"] = (time.monotonic() - t0) * 1e3
        stop(node.proc)
        reps.append(row)
        ctx.say(f"startup rep {rep + 1}: ours ready {row['ours_ready_ms']:.1f} ms, "
                f"blackbox ready {row['theirs_ready_ms']:.1f} ms, first probe "
                f"{row['theirs_metrics_ms']:.1f} ms, node {row['node_metrics_ms']:.1f} ms")
    return {"reps": reps}


def section_series(ctx) -> dict:
    ours = Ours(ctx.binary, ctx.sim, ctx.workdir)
    ours.wait_ready()
    text = ours.scrape()
    stop(ours.proc)
    families: dict[str, int] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = SAMPLE.match(line).group(1)
            families[name] = families.get(name, 0) + 1
    bb = Blackbox(ctx.workdir)
    bb.wait_ready()
    probe_text = get(bb.url + bb.probe_path(ctx.sim.credentials_url))[1].decode()
    bb_own = get(bb.url + "/metrics")[1].decode()
    stop(bb.proc)
    node = NodeExporter(ctx.workdir)
    node.wait_ready()
    node_text = get(node.url + "/metrics")[1].decode()
    stop(node.proc)
    node_timex = sum(1 for line in node_text.splitlines()
                     if line.startswith("node_timex_"))
    return {
        "ours": series_count(text),
        "ours_families": families,
        "blackbox_probe": series_count(probe_text),
        "blackbox_own": series_count(bb_own),
        "node_timex": node_timex,
        "node_all": series_count(node_text),
    }


# ---------------------------------------------------------------------------------------------
# Report


TCPDUMP = "/usr/bin/tcpdump"


def count_packets(port: int, seconds: float) -> int:
    """Packets on loopback to or from TCP `port` during `seconds` (tcpdump's own count)."""
    proc = subprocess.Popen([TCPDUMP, "-i", "lo", "-nn", "-p", "-q", "-w", "/dev/null", f"tcp port {port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    m = re.search(r"(\d+) packets captured", err.decode())
    if not m:
        raise RuntimeError(f"tcpdump printed no count: {err.decode()[-300:]}")
    return int(m.group(1))


def section_outages(ctx) -> dict:
    """Short IMDS outages at random phases against an exporter at its defaults (30 s runs, the
    outage watch every 1.5 s), and the link-local packets its own traffic costs."""
    sim = ctx.sim
    port = int(sim.endpoint.rsplit(":", 1)[1])
    ours = Ours(ctx.binary, sim, ctx.workdir, name="outages")
    ours.wait_ready()
    # The exporter's own traffic, healthy, with nothing else on the simulator's port.
    time.sleep(2)
    baseline_s = ctx.outage_baseline
    Context.say(f"outages: counting the exporter's packets for {baseline_s:.0f} s")
    packets = count_packets(port, baseline_s)

    def outages() -> float:
        return metric(parse_exposition(ours.scrape()), "imds_credentials_outages_total") or 0

    rng = random.Random(ctx.outage_seed)
    plan = [2.0] * ctx.outages + [5.0] * ctx.outages
    rng.shuffle(plan)
    seen = {2.0: 0, 5.0: 0}
    lengths = {2.0: [], 5.0: []}
    for i, d in enumerate(plan):
        # A random phase against the 30 s runs and the 1.5 s checks.
        time.sleep(rng.uniform(3.0, 12.0))
        before = outages()
        sim.scenario("outage")
        time.sleep(d)
        sim.scenario("healthy")
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            if outages() > before:
                seen[d] += 1
                text = parse_exposition(ours.scrape())
                lengths[d].append(metric(text, "imds_credentials_last_outage_duration_seconds"))
                break
            time.sleep(0.1)
        Context.say(f"outages: {i + 1}/{len(plan)}: {d:.0f} s, seen so far {seen[2.0]} + {seen[5.0]}")
    extra = outages() - (seen[2.0] + seen[5.0])
    stop(ours.proc)
    return {"played": {"2": ctx.outages, "5": ctx.outages}, "seen": {"2": seen[2.0], "5": seen[5.0]},
            "lengths": {"2": lengths[2.0], "5": lengths[5.0]}, "extra_counted": extra,
            "baseline_seconds": baseline_s, "packets": packets, "seed": ctx.outage_seed}


def fmt(v, digits=1, unit=""):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def ratio(a, b):
    return a / b if a is not None and b else None


def abs_ratio(a, b):
    """|a| / |b|: the ratio of two errors' magnitudes (an error may be negative)."""
    return abs(a) / abs(b) if a is not None and b else None


def met(ok) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def partial_note(results: dict, name: str) -> list[str]:
    """Under the heading of a section from a run of some sections only: where it comes from (the
    rest of BENCHMARKS.md keeps the figures, header and machine table of an earlier run)."""
    if not results.get("partial"):
        return []
    env = results["environment"]
    return [f"Refreshed alone by `{results['command']}` on {results['finished']}, revision "
            f"`{env['revision']}` ({results[name]['seconds']:.0f} s; {results['reps']} repetitions, "
            f"medians; load average {env['load'].split()[0]} before, {env['load_after'].split()[0]} "
            "after). The other sections and the tables above are from the run named at the top.\n"]


def render(results: dict) -> str:
    out = []
    env = results["environment"]
    out.append(f"Fresh run of `{results['command']}` on {results['finished']}, revision "
               f"`{env['revision']}` ({results['elapsed_s']:.0f} s; {results['reps']} repetitions "
               "per comparison, medians; spread = (max - min) / median over the repetitions).\n")
    out.append("| machine | |\n|---|---|")
    for k in ("cpu", "nproc", "memory", "kernel", "load"):
        out.append(f"| {k} | {env[k]} |")
    out.append("\n| software | version |\n|---|---|")
    for k, v in env["versions"].items():
        out.append(f"| {k} | {v} |")
    out.append("")

    if fp := results.get("footprint"):
        r = fp["reps"]
        med = {k: median([x[k] for x in r]) for k in r[0] if isinstance(r[0][k], (int, float))}
        out.append(f"### 1-2. Memory and CPU per probe run ({fp['runs']:,} runs; ours at "
                   f"`--imds.interval {fp['interval']}`, blackbox driven back to back)\n")
        out.extend(partial_note(results, "footprint"))
        out.append("| measurement | imds_exporter | blackbox_exporter | ratio | target | met? | spread (ours / theirs) |")
        out.append("|---|---|---|---|---|---|---|")
        rs, re_ = med["ours_rss_start_kib"], med["theirs_rss_start_kib"]
        out.append(f"| RSS after start (MiB) | {fmt(rs / 1024, 2)} | {fmt(re_ / 1024, 2)} | "
                   f"{fmt(ratio(rs, re_), 2)} | - | - | {spread([x['ours_rss_start_kib'] for x in r])} / "
                   f"{spread([x['theirs_rss_start_kib'] for x in r])} |")
        e, t = med["ours_rss_end_kib"], med["theirs_rss_end_kib"]
        out.append(f"| RSS after {fp['runs']:,} runs (MiB) | {fmt(e / 1024, 2)} | {fmt(t / 1024, 2)} | "
                   f"{fmt(ratio(e, t), 2)} | <= 0.33 and < 10 MiB | "
                   f"{met(ratio(e, t) <= 1 / 3 and e < 10 * 1024)} | "
                   f"{spread([x['ours_rss_end_kib'] for x in r])} / {spread([x['theirs_rss_end_kib'] for x in r])} |")
        c, ct = med["ours_cpu_per_run_us"], med["theirs_cpu_per_run_us"]
        out.append(f"| CPU per probe run (µs, utime+stime) | {fmt(c, 0)} | {fmt(ct, 0)} | "
                   f"{fmt(ratio(c, ct), 2)} | <= 0.5 | {met(ratio(c, ct) <= 0.5)} | "
                   f"{spread([x['ours_cpu_per_run_us'] for x in r])} / {spread([x['theirs_cpu_per_run_us'] for x in r])} |")
        per_req = c / 4
        out.append(f"| CPU per HTTP request (µs) | {fmt(per_req, 0)} (4 per run) | {fmt(ct, 0)} (1 per probe) | "
                   f"{fmt(ratio(per_req, ct), 2)} | - | - | |")
        out.append(f"| wall time for the runs (s) | {fmt(med['ours_seconds'], 1)} | "
                   f"{fmt(med['theirs_seconds'], 1)} | | | | |")
        parts = {w: {k: median([x[f"{w}_rss_parts"].get(k) for x in r]) for k in ("RssAnon", "RssFile", "Threads")}
                 for w in ("ours", "theirs")}
        out.append(f"| RSS at the end: anonymous / file-backed (MiB) | {fmt(parts['ours']['RssAnon'] / 1024, 2)} / "
                   f"{fmt(parts['ours']['RssFile'] / 1024, 2)} | {fmt(parts['theirs']['RssAnon'] / 1024, 2)} / "
                   f"{fmt(parts['theirs']['RssFile'] / 1024, 2)} | | | | |")
        out.append(f"| threads | {fmt(parts['ours']['Threads'], 0)} | {fmt(parts['theirs']['Threads'], 0)} | | | | |")
        out.append("")
        out.append("Per repetition (ours / theirs): " + "; ".join(
            f"{x['ours_rss_end_kib'] / 1024:.2f}/{x['theirs_rss_end_kib'] / 1024:.2f} MiB, "
            f"{x['ours_cpu_per_run_us']:.0f}/{x['theirs_cpu_per_run_us']:.0f} µs (load {x['load_before']:.2f})"
            for x in r) + "\n")

    if sc := results.get("scrape"):
        r = sc["reps"]
        out.append("### 3. `/metrics` under `wrk -t2 -c32 -d10s --latency`\n")
        out.extend(partial_note(results, "scrape"))
        out.append("| measurement | imds_exporter | blackbox_exporter | ratio | node_exporter | target | met? |")
        out.append("|---|---|---|---|---|---|---|")
        m = {t: {k: median([x[t].get(k) for x in r]) for k in ("rps", "p50_ms", "p99_ms")}
             for t in ("ours", "blackbox", "node")}
        rr = ratio(m["ours"]["rps"], m["blackbox"]["rps"])
        out.append(f"| throughput (req/s) | {fmt(m['ours']['rps'], 0)} | {fmt(m['blackbox']['rps'], 0)} | "
                   f"{fmt(rr, 2)} | {fmt(m['node']['rps'], 0)} | >= 3 | {met(rr >= 3)} |")
        out.append(f"| latency p50 (ms) | {fmt(m['ours']['p50_ms'], 3)} | {fmt(m['blackbox']['p50_ms'], 3)} | "
                   f"{fmt(ratio(m['ours']['p50_ms'], m['blackbox']['p50_ms']), 2)} | {fmt(m['node']['p50_ms'], 3)} | - | - |")
        out.append(f"| latency p99 (ms) | {fmt(m['ours']['p99_ms'], 3)} | {fmt(m['blackbox']['p99_ms'], 3)} | "
                   f"{fmt(ratio(m['ours']['p99_ms'], m['blackbox']['p99_ms']), 2)} | {fmt(m['node']['p99_ms'], 3)} | < 2 ms | "
                   f"{met(m['ours']['p99_ms'] < 2)} |")
        cpu = {t: median([x[t].get("cpu_per_request_us") for x in r]) for t in ("ours", "blackbox", "node")}
        out.append(f"| server CPU per scrape under that load (µs) | {fmt(cpu['ours'], 0)} | {fmt(cpu['blackbox'], 0)} | "
                   f"{fmt(ratio(cpu['ours'], cpu['blackbox']), 2)} | {fmt(cpu['node'], 0)} | - | - |")
        c1 = {t: {k: median([x[t + "_c1"].get(k) for x in r]) for k in ("rps", "p50_ms", "p99_ms")}
              for t in ("ours", "blackbox", "node")}
        out.append(f"| one connection (`-t1 -c1`): throughput (req/s) | {fmt(c1['ours']['rps'], 0)} | "
                   f"{fmt(c1['blackbox']['rps'], 0)} | {fmt(ratio(c1['ours']['rps'], c1['blackbox']['rps']), 2)} | "
                   f"{fmt(c1['node']['rps'], 0)} | - | - |")
        out.append(f"| one connection: latency p50 / p99 (ms) | {fmt(c1['ours']['p50_ms'], 3)} / {fmt(c1['ours']['p99_ms'], 3)} | "
                   f"{fmt(c1['blackbox']['p50_ms'], 3)} / {fmt(c1['blackbox']['p99_ms'], 3)} | - | "
                   f"{fmt(c1['node']['p50_ms'], 3)} / {fmt(c1['node']['p99_ms'], 3)} | - | - |")
        s = sc["size"]
        out.append(f"| exposition size (bytes) | {s['ours']['bytes']:,} | {s['blackbox']['bytes']:,} | "
                   f"{fmt(ratio(s['ours']['bytes'], s['blackbox']['bytes']), 2)} | {s['node']['bytes']:,} | - | - |")
        out.append(f"| series in the exposition | {s['ours']['series']} | {s['blackbox']['series']} | "
                   f"{fmt(ratio(s['ours']['series'], s['blackbox']['series']), 2)} | {s['node']['series']} | - | - |")
        out.append("")
        out.append("Per repetition, -c32 throughput ours / blackbox (load average before): " + "; ".join(
            f"{x['ours'].get('rps', 0):,.0f} / {x['blackbox'].get('rps', 0):,.0f} ({x['load_before']:.2f})" for x in r)
            + ". Spread of throughput over the repetitions: " + ", ".join(
            f"{t} {spread([x[t].get('rps') for x in r])}" for t in ("ours", "blackbox", "node"))
            + "; errors reported by wrk: " + (", ".join(
                sorted({e for x in r for t in ("ours", "blackbox", "node") for e in x[t].get("errors", [])}))
                or "none") + ".\n")

    if la := results.get("latency"):
        r = la["reps"]
        out.append(f"### 4. Accuracy of latency (simulator scenario `slow?delay=50ms`; error = reported - 50 ms)\n")
        out.extend(partial_note(results, "latency"))
        out.append("| measurement | imds_exporter | blackbox_exporter | ratio | target | met? |")
        out.append("|---|---|---|---|---|---|")
        phases = [ph for ph in PHASES if any(ph in x.get("phase_trace", {}) for x in r)]
        # Per phase, from the trace log: the p50 and p99 of each repetition, their medians.
        for ph in phases:
            p50 = median([x["phase_trace"].get(ph, {}).get("p50_error_ms") for x in r])
            p99 = median([x["phase_trace"].get(ph, {}).get("p99_error_ms") for x in r])
            n = sum(x["phase_trace"].get(ph, {}).get("count", 0) for x in r)
            out.append(f"| phase `{ph}`: p50 / p99 of the error per request, trace log (ms; {n} requests) | "
                       f"{fmt(p50, 3)} / {fmt(p99, 3)} | - | - | p50 within ±1 ms | "
                       f"{met(None if p50 is None else abs(p50) <= 1)} |")
        p50 = median([x["p50_error_ms"] for x in r])
        t50 = median([x["theirs_p50_error_ms"] for x in r])
        out.append(f"| all phases together: p50 of the error per request (ms) | {fmt(p50, 3)} | "
                   f"{fmt(t50, 3)} | {fmt(abs_ratio(p50, t50), 2)} | within ±1 ms | "
                   f"{met(None if p50 is None else abs(p50) <= 1)} |")
        p99 = median([x["p99_error_ms"] for x in r])
        t99 = median([x["theirs_p99_error_ms"] for x in r])
        out.append(f"| all phases together: p99 of the error per request (ms) | {fmt(p99, 3)} | "
                   f"{fmt(t99, 3)} | {fmt(abs_ratio(p99, t99), 2)} | - | - |")
        pooled = [e for x in r for e in x["errors_ms"]]
        theirs_pooled = [e for x in r for e in x["theirs_errors_ms"]]
        pq = [percentile(pooled, 0.5), percentile(pooled, 0.99), max(pooled, default=None)]
        tq = [percentile(theirs_pooled, 0.5), percentile(theirs_pooled, 0.99),
              max(theirs_pooled, default=None)]
        out.append(f"| all phases and repetitions pooled: p50 / p99 / max of the error (ms; {len(pooled)} and "
                   f"{len(theirs_pooled)} requests) | {' / '.join(fmt(v, 3) for v in pq)} | "
                   f"{' / '.join(fmt(v, 3) for v in tq)} | "
                   f"{' / '.join(fmt(abs_ratio(a, b), 2) for a, b in zip(pq, tq))} | - | - |")
        out.append(f"| p50 / p99 error of blackbox's `probe_duration_seconds` (ms) | - | "
                   f"{fmt(median([x['theirs_total_p50_error_ms'] for x in r]), 3)} / "
                   f"{fmt(median([x['theirs_total_p99_error_ms'] for x in r]), 3)} | - | - | - |")
        for ph in PHASES:
            vals = [x["phase_mean_error_ms"].get(ph, {}).get("mean_error_ms") for x in r]
            counts = sum(x["phase_mean_error_ms"].get(ph, {}).get("count", 0) for x in r)
            if any(v is not None for v in vals):
                out.append(f"| histogram mean error, phase `{ph}` (ms; {counts:.0f} requests) | "
                           f"{fmt(median(vals), 3)} | - | - | - | - |")
        for ph in PHASES:
            qs = [x.get("phase_histogram_quantile", {}).get(ph) for x in r]
            if any(q for q in qs):
                q50 = median([q and q["q50_ms"] for q in qs])
                q99 = median([q and q["q99_ms"] for q in qs])
                out.append(f"| `histogram_quantile(0.5)` / `(0.99)` of the scraped buckets, phase `{ph}`: "
                           f"reading (error) (ms) | {fmt(q50, 1)} / {fmt(q99, 1)} "
                           f"({fmt(q50 and q50 - la['delay_ms'], 1)} / {fmt(q99 and q99 - la['delay_ms'], 1)}) | "
                           f"- | - | - | - |")
        out.append("")
        out.append("p50 of the error per phase in each repetition (ms, trace log): " + "; ".join(
            f"`{ph}` " + ", ".join(fmt(x["phase_trace"].get(ph, {}).get("p50_error_ms"), 3) for x in r)
            for ph in phases) + ". Per phase, all repetitions pooled, p50 / p99 / max (ms): " + "; ".join(
            f"`{ph}` {fmt(percentile(es, 0.5), 3)} / {fmt(percentile(es, 0.99), 3)} / {fmt(max(es, default=None), 3)}"
            for ph in phases
            for es in [[e for x in r for e in x["phase_trace"].get(ph, {}).get("errors_ms", [])]])
            + f". With {fmt(median([v['count'] for x in r for v in x['phase_trace'].values()]), 0)} "
            "requests per phase and repetition, a repetition's p99 is close to its largest error.")
        out.append("")
        out.append(f"Requests per repetition (ours, from trace logs): "
                   + ", ".join(str(x["samples"]) for x in r)
                   + f"; failed requests: {sum(x['failures'] for x in r)}; blackbox probes per repetition: "
                   + f"{r[0]['theirs_samples']}. Blackbox's per-request figure is the sum of its "
                   "`probe_http_duration_seconds` phases (connect to end of body, the span ours times); "
                   "it has no phases, so it sits in the all-phases rows. Ratio: the magnitude of our error over "
                   "blackbox's (|ours| / |blackbox|; below 1, ours is closer to the injected delay).\n")

    if nt := results.get("ntp"):
        r = nt["reps"]
        out.append(f"### 5. Accuracy of clock offset (chronyd under `faketime -f +{nt['offset_s']}s`, "
                   "true offset +2.5 s; error = median offset - 2.5 s)\n")
        out.extend(partial_note(results, "ntp"))
        out.append("| client | repetitions x samples | median error (ms) | range over repetitions, "
                   "min to max (ms) | ratio | target | met? |")
        out.append("|---|---|---|---|---|---|---|")
        ours = nt.get("ours_median_error_ms")
        for k, label in (("ours", "imds_exporter `imds_ntp_offset_seconds`"),
                         ("ntplib", "Python ntplib"), ("sntp", "`sntp` (NTPsec ntpdig)"),
                         ("node_exporter", "node_exporter `node_ntp_offset_seconds`")):
            if not any(x.get(k) for x in r):
                continue
            e = nt.get(f"{k}_median_error_ms")
            per_rep = sorted({len(x[k]) for x in r if x.get(k)})
            tgt, ok = ("as good as ntplib (±1 ms)",
                       met(e is not None and nt.get("ntplib_median_error_ms") is not None
                           and abs(e - nt["ntplib_median_error_ms"]) <= 1)) if k == "ours" else ("-", "-")
            out.append(f"| {label} | {nt.get(f'{k}_reps', 0)} x {'/'.join(map(str, per_rep))} | {fmt(e, 3)} | "
                       f"{fmt(nt.get(f'{k}_min_error_ms'), 3)} to {fmt(nt.get(f'{k}_max_error_ms'), 3)} | "
                       f"{'-' if k == 'ours' else fmt(abs_ratio(ours, e), 2)} | {tgt} | {ok} |")
        out.append("")
        loads = [x["load_before"] for x in r]
        out.append("Each repetition is a fresh chronyd under faketime (its own port), sampled "
                   f"{nt['samples_per_rep']} times by each client in turn; a repetition's error is the "
                   "median of its samples, the table gives the median and the range of those over "
                   "the repetitions. Ratio: the magnitude of our error over that client's "
                   "(|ours| / |theirs|; below 1, ours is closer to the true offset). "
                   "Median error per repetition (ms), ours / ntplib / sntp / node_exporter (load "
                   "average before): " + "; ".join(
                       " / ".join(fmt(x.get(f"{k}_median_error_ms"), 3) for k in NTP_CLIENTS)
                       + f" ({x['load_before']:.2f})" for x in r) + ".")
        busy = max(loads) >= (os.cpu_count() or 1)
        worst = max(abs(x[f"{k}_median_error_ms"]) for x in r for k in NTP_CLIENTS
                    if x.get(f"{k}_median_error_ms") is not None)
        out.append(("The machine was busy during this run (load average up to "
                    f"{max(loads):.2f} on {os.cpu_count()} cores, other processes included), which "
                    "widens the range; " if busy else f"Load average {min(loads):.2f} to {max(loads):.2f} "
                    f"on {os.cpu_count()} cores. ")
                   + f"Every client's median error is within ±{fmt(worst, 3)} ms; at that size "
                   "it is the asymmetry of the loopback round trip (each client's own time stamping "
                   "before sending and after receiving), so ratios between clients are ratios of "
                   "small numbers and move from run to run; the target is ours within ±1 ms of "
                   "ntplib.\n")

    if st := results.get("startup"):
        r = st["reps"]
        out.append("### 6. Start-up (from exec)\n")
        out.extend(partial_note(results, "startup"))
        out.append("| measurement | imds_exporter | blackbox_exporter | ratio | node_exporter |")
        out.append("|---|---|---|---|---|")
        a, b = median([x["ours_ready_ms"] for x in r]), median([x["theirs_ready_ms"] for x in r])
        out.append(f"| `/-/ready` answers 200 (ms) | {fmt(a, 1)} | {fmt(b, 1)} | {fmt(ratio(a, b), 2)} | - |")
        a, b = median([x["ours_metrics_ms"] for x in r]), median([x["theirs_metrics_ms"] for x in r])
        out.append(f"| first complete metrics (ms): ours `imds_probe_runs_total` >= 1, blackbox a "
                   f"successful `/probe`, node_exporter `/metrics` | {fmt(a, 1)} | {fmt(b, 1)} | "
                   f"{fmt(ratio(a, b), 2)} | {fmt(median([x['node_metrics_ms'] for x in r]), 1)} |")
        out.append("")

    if se := results.get("series"):
        n = se["ours"]
        theirs = se["blackbox_probe"] + se["node_timex"]
        out.append("### 7. Series per node and the fleet's cost (30 s scrape interval)\n")
        out.extend(partial_note(results, "series"))
        out.append("| measurement | imds_exporter | blackbox /probe + node_exporter timex | ratio | target | met? |")
        out.append("|---|---|---|---|---|---|")
        out.append(f"| series per node (default flags, NTP on, no ENA interface) | {n} | {theirs} "
                   f"({se['blackbox_probe']} + {se['node_timex']}) | {fmt(ratio(n, theirs), 2)} | < 100 | {met(n < 100)} |")
        for nodes in (1000, 5000):
            out.append(f"| {nodes:,} nodes: series | {n * nodes:,} | {theirs * nodes:,} | | | |")
            out.append(f"| {nodes:,} nodes: samples/s | {n * nodes / 30:,.0f} | {theirs * nodes / 30:,.0f} | | | |")
        out.append("")
        fam = se["ours_families"]
        top = sorted(fam.items(), key=lambda kv: -kv[1])[:6]
        out.append("Largest families: " + ", ".join(f"`{k}` {v}" for k, v in top)
                   + f". For scale: blackbox_exporter's own `/metrics` has {se['blackbox_own']} series, "
                   f"node_exporter's full default `/metrics` {se['node_all']}.\n")

    if ou := results.get("outages"):
        out.append("### 8. Short outages seen, and the exporter's link-local traffic (defaults: 30 s runs, "
                   "outage checks every 1.5 s)\n")
        out.extend(partial_note(results, "outages"))
        out.append("| measurement | value | target | met? |\n|---|---|---|---|")
        for d in ("2", "5"):
            n, k = ou["played"][d], ou["seen"][d]
            ls = [x for x in ou["lengths"][d] if x is not None]
            out.append(f"| {d} s outages seen (counted once, within 6 s of their end) | {k} of {n} "
                       f"({100 * k / n:.0f} %); measured length median {fmt(median(ls), 1)} s, "
                       f"{fmt(min(ls), 1)}-{fmt(max(ls), 1)} s | >= 95 % | {met(k >= 0.95 * n)} |")
        pps = ou["packets"] / ou["baseline_seconds"]
        out.append(f"| the exporter's packets to and from IMDS, healthy ({ou['baseline_seconds']:.0f} s, "
                   f"tcpdump on loopback) | {ou['packets']:,} = {pps:.1f} packets/s ({100 * pps / 1024:.2f} % "
                   f"of the 1,024 packets/s link-local allowance) | <= 10 packets/s (1 %) | {met(pps <= 10)} |")
        out.append("")
        out.append(f"Outages played as the simulator's `outage` scenario (requests held, never answered) for "
                   f"2 s or 5 s, in shuffled order, each after a healthy gap drawn from 3-12 s (seed "
                   f"{ou['seed']}), so that they fall at random phases of the 30 s runs and the 1.5 s "
                   f"checks. Windows counted but not played: {ou['extra_counted']:.0f}.\n")

    if bs := results.get("binary"):
        out.append("### Binary size\n")
        out.append("| binary | bytes | MiB | target | met? |\n|---|---|---|---|---|")
        out.append(f"| imds_exporter (release, stripped) | {bs['ours']:,} | {bs['ours'] / 2**20:.2f} | "
                   f"< 8 MiB | {met(bs['ours'] < 8 * 2**20)} |")
        out.append(f"| prometheus-blackbox-exporter (Debian) | {bs['blackbox']:,} | {bs['blackbox'] / 2**20:.2f} | - | - |")
        out.append(f"| prometheus-node-exporter (Debian) | {bs['node']:,} | {bs['node'] / 2**20:.2f} | - | - |")
        out.append("")
    return "\n".join(out)


def version_of(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (p.stdout + p.stderr).strip().splitlines()[0]
        return text
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "n/a"


def revision() -> str:
    """`git rev-parse --short HEAD`, with `-dirty` when the work tree differs from it (tracked
    changes or untracked files, as the build sees them). Read-only: no index refresh is written."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "--no-optional-locks", "-C", str(REPO), "status",
                                 "--porcelain"], capture_output=True, text=True, timeout=30,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    return head + ("-dirty" if status.strip() else "")


def environment(binary: str) -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    rev = revision()
    return {
        "revision": rev,
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "memory": f"{int(mem) / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "load": Path("/proc/loadavg").read_text().strip(),
        "versions": {
            "imds_exporter": f"{version_of([binary, '--version'])} (revision {rev})",
            "blackbox_exporter": version_of([BLACKBOX, "--version"]),
            "node_exporter": version_of([NODE_EXPORTER, "--version"]),
            "wrk": version_of(["wrk", "-v"]),
            "chrony": version_of([CHRONYD, "-v"]),
            "faketime (libfaketime)": subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", "faketime"], capture_output=True,
                text=True).stdout or "n/a",
            "ntplib": __import__("importlib.metadata").metadata.version("ntplib"),
            "sntp": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "sntp"],
                                   capture_output=True, text=True).stdout or "n/a",
            "rustc": version_of(["rustc", "-V"]),
        },
    }


class Context:
    def __init__(self, args, workdir: Path, sim: Simulator):
        self.binary = args.binary
        self.reps = args.reps
        self.runs = args.runs
        self.interval = args.interval
        self.wrk_seconds = args.wrk_seconds
        self.latency_seconds = args.latency_seconds
        self.latency_probes = args.latency_probes
        self.outages = args.outages
        self.outage_baseline = args.outage_baseline
        self.outage_seed = args.outage_seed
        self.workdir = workdir
        self.sim = sim

    @staticmethod
    def say(msg: str) -> None:
        print(f"bench: {msg}", flush=True)


SECTIONS = {
    "footprint": section_footprint,
    "scrape": section_scrape,
    "latency": section_latency,
    "ntp": section_ntp,
    "startup": section_startup,
    "series": section_series,
    "outages": section_outages,
}


# The heading (its first word after `###`) of each section in the rendered tables.
HEADINGS = {"footprint": "1-2.", "scrape": "3.", "latency": "4.", "ntp": "5.", "startup": "6.",
            "series": "7.", "outages": "8."}


def split_sections(body: str) -> tuple[str, list[tuple[str, str]]]:
    """The text before the first `### ` heading, and (first word of the heading, text) per section."""
    parts = re.split(r"(?m)^(?=### )", body)
    head, chunks = parts[0], []
    for part in parts[1:]:
        chunks.append((part.split(None, 2)[1], part))
    return head, chunks


def update_benchmarks_md(path: Path, body: str, only: list[str] | None = None) -> None:
    """Rewrites the text between the markers; with `only`, just those sections' tables, leaving
    the header, the machine table and the other sections of the earlier run in place."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{MARK_BEGIN}\n{MARK_END}\n"
    if MARK_BEGIN not in text or MARK_END not in text:
        text += f"\n{MARK_BEGIN}\n{MARK_END}\n"
    head, rest = text.split(MARK_BEGIN, 1)
    old, tail = rest.split(MARK_END, 1)
    if only is not None:
        keys = {HEADINGS[name] for name in only}
        fresh = dict(c for c in split_sections(body.strip("\n") + "\n")[1] if c[0] in keys)
        old_head, chunks = split_sections(old.strip("\n") + "\n")
        merged = [(k, fresh.pop(k, t)) for k, t in chunks]
        merged += list(fresh.items())  # sections the earlier run did not have
        body = (old_head + "".join(t.rstrip("\n") + "\n\n" for _, t in merged)).rstrip("\n") + "\n"
    path.write_text(f"{head}{MARK_BEGIN}\n{body}\n{MARK_END}{tail}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=str(REPO / "target/release/imds_exporter"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10_000, help="probe runs for the footprint section")
    ap.add_argument("--interval", default="1ms", help="our --imds.interval in the footprint section")
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--latency-seconds", type=float, default=4.0)
    ap.add_argument("--latency-probes", type=int, default=60)
    ap.add_argument("--outages", type=int, default=20, help="outages of each length (2 s, 5 s)")
    ap.add_argument("--outage-baseline", type=float, default=180.0,
                    help="seconds of healthy traffic counted for the packet rate")
    ap.add_argument("--outage-seed", type=int, default=14)
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help="comma-separated sections; a subset replaces only their tables in "
                         "BENCHMARKS.md and writes bench/results/latest-<sections>.{json,md}")
    ap.add_argument("--command", default=None,
                    help="how the run is named in the tables (default: bench/run and its options)")
    ap.add_argument("--no-write", action="store_true",
                    help="do not update BENCHMARKS.md (bench/results is still written)")
    args = ap.parse_args()
    only = args.only.split(",")
    if unknown := [name for name in only if name not in SECTIONS]:
        ap.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    partial = set(only) != set(SECTIONS)
    if args.command is None:
        # bench/run passes `--binary target/release/imds_exporter` first, then the user's options.
        argv = sys.argv[1:]
        if argv[:1] == ["--binary"]:
            argv = argv[2:]
        args.command = " ".join(["bench/run", *(shlex.quote(a) for a in argv)])

    for tool in (BLACKBOX, NODE_EXPORTER, CHRONYD, TCPDUMP, args.binary):
        if not Path(tool).exists():
            print(f"bench: {tool} is missing (bench/run installs and builds everything)", file=sys.stderr)
            return 2
    for env in ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "HTTP_PROXY", "http_proxy"):
        os.environ.pop(env, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="imds-bench-"))
    atexit.register(shutil.rmtree, workdir, True)
    results = {"command": args.command, "reps": args.reps, "sections": only, "partial": partial,
               "environment": environment(args.binary)}
    sim = Simulator(args.binary, workdir)
    ctx = Context(args, workdir, sim)
    Context.say(f"simulator {sim.endpoint} (ntp {sim.ntp}); load {loadavg():.2f}; "
                f"{args.reps} repetitions")
    for name in only:
        t0 = time.monotonic()
        Context.say(f"== {name}")
        results[name] = SECTIONS[name](ctx)
        results[name]["seconds"] = time.monotonic() - t0
    stop(sim.proc)
    results["binary"] = {"ours": Path(args.binary).stat().st_size,
                         "blackbox": Path(BLACKBOX).stat().st_size,
                         "node": Path(NODE_EXPORTER).stat().st_size}
    results["elapsed_s"] = time.monotonic() - started
    results["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results["environment"]["load_after"] = Path("/proc/loadavg").read_text().strip()

    md = render(results)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    # A full run is latest.{json,md}; a run of some sections goes next to it
    # (latest-latency.json, ...) and leaves the full run's raw numbers alone.
    stem = "latest-" + "+".join(only) if partial else "latest"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / f"{stem}.md").write_text(md + "\n")
    if not args.no_write:
        update_benchmarks_md(REPO / "BENCHMARKS.md", md, only if partial else None)
    print(md)
    Context.say(f"done in {results['elapsed_s']:.0f} s; tables in bench/results/{stem}.md"
                + ("" if args.no_write else (" and BENCHMARKS.md" + (
                    f" (only {', '.join(only)})" if partial else ""))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
