#!/usr/bin/env python3
"""The figures behind docs/reliability.md: the exporter under a connection flood and at shutdown.

    bench/reliability [--binary PATH] [--idle 10000] [--slow 200] [--attack-seconds 30]
                      [--shutdown-reps 5] [--json OUT]

Everything on loopback; Python 3 standard library only. Steps:

1. `imds_exporter simulate --listen 127.0.0.1:0 --ntp-listen 127.0.0.1:0` (IMDS and NTP).
2. The exporter against it, probing IMDS and NTP every second, with a soft and hard limit of
   1,024 open files (`ulimit -n 1024`, set in the child before exec) and default web flags.
3. The flood, from one peer (127.0.0.2): 10,000 connections that send nothing, then 200
   slowloris connections that send a request head one byte a second and never finish it. Each
   one records when the exporter closed it. The client raises its own open-files limit.
4. Meanwhile another client (127.0.0.1) GETs /metrics on a new connection every 100 ms and
   records each latency; the exporter's RSS and open descriptors are sampled every 250 ms.
5. The probes' failure counters (`imds_probe_failures_total`) before and after must not move,
   while their run counters do.
6. Shutdown: a fresh exporter, 20 idle, 20 half-sent (`GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n`)
   and 20 streaming clients (1,000 pipelined requests each, reading one byte a second), then
   SIGTERM: the exit code and the time to exit, `--shutdown-reps` times.

Prints a Markdown summary and writes the raw figures as JSON (--json). Every process it starts is
stopped when it ends.
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ATTACKER = "127.0.0.2"
SCRAPER = "127.0.0.1"


def log(msg):
    print(f"reliability: {msg}", file=sys.stderr, flush=True)


def limit_files(n):
    def preexec():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return preexec


class Proc:
    """A child process whose stderr lines are collected; its listening address comes from them."""

    def __init__(self, args, preexec=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IMDS_EXPORTER_", "AWS_")) and not k.lower().endswith("_proxy")}
        self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, env=env, preexec_fn=preexec)
        self.lines = []

    def wait_line(self, needle, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.p.stderr.readline()
            if not line:
                raise RuntimeError(f"exited before {needle!r}: {''.join(self.lines[-20:])}")
            self.lines.append(line)
            if needle in line:
                return line
        raise TimeoutError(needle)

    def drain(self):
        """Keep reading stderr in the background so the child never blocks on a full pipe."""
        import threading

        def run():
            for line in self.p.stderr:
                self.lines.append(line)

        threading.Thread(target=run, daemon=True).start()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def field(line, name):
    for part in line.split():
        if part.startswith(name + "="):
            return part.split("=", 1)[1].strip('"')
    raise ValueError(f"no {name}= in {line}")


def start_sim(binary):
    sim = Proc([binary, "simulate", "--listen", "127.0.0.1:0", "--ntp-listen", "127.0.0.1:0", "--log.format", "logfmt"])
    imds = field(sim.wait_line("IMDS simulator listening"), "address")
    ntp = field(sim.wait_line("SNTP answerer listening"), "address")
    sim.drain()
    return sim, imds, ntp


def start_exporter(binary, imds, ntp, extra=()):
    args = [binary, "--web.listen-address", "127.0.0.1:0", "--imds.endpoint", f"http://{imds}", "--ntp.server", ntp,
            "--imds.interval", "1s", "--ntp.interval", "1s", "--collector.ethtool=false", "--log.format", "logfmt", *extra]
    ex = Proc(args, preexec=limit_files(1024))
    addr = field(ex.wait_line("imds_exporter listening"), "address")
    ex.drain()
    host, port = addr.rsplit(":", 1)
    return ex, (host, int(port))


def scrape(addr):
    with urllib.request.urlopen(f"http://{addr[0]}:{addr[1]}/metrics", timeout=10) as r:
        return r.read().decode()


def counters(text):
    out = {"failures": 0.0, "runs": {}}
    for line in text.splitlines():
        if line.startswith("imds_probe_failures_total{"):
            out["failures"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("imds_probe_runs_total{"):
            probe = line.split('probe="', 1)[1].split('"', 1)[0]
            out["runs"][probe] = float(line.rsplit(" ", 1)[1])
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def f(value, spec):
    """A figure for the table; "-" when there is none."""
    if value is None or value != value:
        return "-"
    return format(value, spec)


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


# ------------------------------------------------------------------------------------ the flood

def attacker(i, peers):
    """The source address of the i-th flood connection: 127.0.0.2, or spread over `peers` addresses."""
    n = 2 + i % peers
    return f"127.0.{n // 256}.{n % 256}" if peers > 1 else ATTACKER


async def idle_conn(addr, source, results, sem):
    async with sem:
        try:
            reader, writer = await asyncio.open_connection(addr[0], addr[1], local_addr=(source, 0))
        except OSError as e:
            results["connect_errors"] += 1
            results["connect_error"] = str(e)
            return
    results["connected"] += 1
    t0 = time.monotonic()
    try:
        while await reader.read(1024):
            pass
    except OSError:
        pass
    results["closed_after"].append(time.monotonic() - t0)
    writer.close()


async def slow_conn(addr, source, results, stop):
    try:
        reader, writer = await asyncio.open_connection(addr[0], addr[1], local_addr=(source, 0))
    except OSError:
        results["connect_errors"] += 1
        return
    results["connected"] += 1
    t0 = time.monotonic()
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000

    async def drip():
        for b in head:
            if stop.is_set():
                return
            writer.write(bytes([b]))
            try:
                await writer.drain()
            except OSError:
                return
            await asyncio.sleep(1)

    dripper = asyncio.create_task(drip())
    try:
        while await reader.read(1024):
            pass
    except OSError:
        pass
    results["closed_after"].append(time.monotonic() - t0)
    dripper.cancel()
    writer.close()


async def scrape_loop(addr, seconds, latencies, failures):
    request = f"GET /metrics HTTP/1.1\r\nHost: {addr[0]}\r\nConnection: close\r\n\r\n".encode()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(addr[0], addr[1], local_addr=(SCRAPER, 0)), 5)
            writer.write(request)
            body = await asyncio.wait_for(reader.read(-1), 5)
            writer.close()
            if not body.startswith(b"HTTP/1.1 200") or b"imds_probe_success" not in body:
                failures.append(body[:80].decode(errors="replace"))
            else:
                latencies.append(time.monotonic() - t0)
        except (OSError, asyncio.TimeoutError) as e:
            failures.append(repr(e))
        await asyncio.sleep(0.1)


def scraper_process(addr, seconds, out):
    """The other client, in a process of its own: the flood's 10,000 coroutines must not delay
    its event loop (that would be the client's latency, not the exporter's)."""
    latencies, failures = [], []
    asyncio.run(scrape_loop(addr, seconds, latencies, failures))
    out.send((latencies, failures))


async def sampler(pid, stop, samples):
    while not stop.is_set():
        samples["rss_kib"].append(rss_kib(pid))
        samples["fds"].append(open_fds(pid))
        await asyncio.sleep(0.25)


async def flood(addr, pid, n_idle, n_slow, seconds, peers):
    import multiprocessing

    stop = asyncio.Event()
    idle = {"connected": 0, "connect_errors": 0, "closed_after": []}
    slow = {"connected": 0, "connect_errors": 0, "closed_after": []}
    samples = {"rss_kib": [], "fds": []}
    parent, child = multiprocessing.Pipe()
    scraper = multiprocessing.Process(target=scraper_process, args=(addr, seconds, child), daemon=True)
    scraper.start()
    bg = asyncio.create_task(sampler(pid, stop, samples))
    start = time.monotonic()
    # The slowloris first, so that they hold places when the idle flood comes.
    tasks = [asyncio.create_task(slow_conn(addr, attacker(i, peers), slow, stop)) for i in range(n_slow)]
    while slow["connected"] + slow["connect_errors"] < n_slow and time.monotonic() - start < seconds:
        await asyncio.sleep(0.01)
    sem = asyncio.Semaphore(1000)
    idle_start = time.monotonic()
    tasks += [asyncio.create_task(idle_conn(addr, attacker(i, peers), idle, sem)) for i in range(n_idle)]
    while idle["connected"] + idle["connect_errors"] < n_idle and time.monotonic() - start < seconds:
        await asyncio.sleep(0.05)
    opened_in = time.monotonic() - idle_start
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - start)))
    stop.set()
    await bg
    latencies, failures = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
    scraper.join(10)
    still_open = sum(1 for t in tasks if not t.done())
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "idle": {**{k: v for k, v in idle.items() if k != "closed_after"}, "opened_in_s": round(opened_in, 2),
                 "closed": len(idle["closed_after"]),
                 "closed_after_p50_s": pct(idle["closed_after"], 50), "closed_after_max_s": max(idle["closed_after"], default=None)},
        "slow": {**{k: v for k, v in slow.items() if k != "closed_after"}, "closed": len(slow["closed_after"]),
                 "closed_after_p50_s": pct(slow["closed_after"], 50), "closed_after_max_s": max(slow["closed_after"], default=None),
                 "closed_after_1s": sum(1 for t in slow["closed_after"] if t >= 1.0)},
        "still_open_at_end": still_open,
        "scrapes": len(latencies), "scrape_failures": len(failures), "scrape_failure_examples": failures[:3],
        "scrape_p50_ms": pct(latencies, 50) * 1000, "scrape_p99_ms": pct(latencies, 99) * 1000,
        "scrape_max_ms": max(latencies, default=float("nan")) * 1000,
        "rss_max_mib": max(samples["rss_kib"]) / 1024, "rss_start_mib": samples["rss_kib"][0] / 1024,
        "fds_max": max(samples["fds"]),
    }


# ---------------------------------------------------------------------------------------- shutdown

async def shutdown_once(binary, imds, ntp, n_each):
    ex, addr = start_exporter(binary, imds, ntp)
    scrape(addr)
    conns = []
    for _ in range(n_each):
        r, w = await asyncio.open_connection(*addr)
        conns.append(w)
    for _ in range(n_each):
        r, w = await asyncio.open_connection(*addr)
        w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        await w.drain()
        conns.append(w)
    streams = []
    for _ in range(n_each):
        r, w = await asyncio.open_connection(*addr)
        # A small receive buffer, so that the responses pile up on the server's side.
        w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # 1,000 pipelined scrapes (about 20 MB of responses): more than the kernel's buffers
        # hold, so the exporter is still writing when SIGTERM comes.
        w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 1000)
        await w.drain()
        conns.append(w)

        async def trickle(reader=r):
            try:
                while await reader.read(1):
                    await asyncio.sleep(1)
            except OSError:
                pass

        streams.append(asyncio.create_task(trickle()))
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    ex.p.send_signal(signal.SIGTERM)
    while ex.p.poll() is None and time.monotonic() - t0 < 30:
        await asyncio.sleep(0.01)
    took = time.monotonic() - t0
    code = ex.p.poll()
    ex.stop()
    for s in streams:
        s.cancel()
    for w in conns:
        w.close()
    return {"exit_code": code, "seconds": round(took, 3)}


# ------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(ROOT / "target/release/imds_exporter"))
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--attack-seconds", type=float, default=30)
    ap.add_argument("--shutdown-reps", type=int, default=5)
    ap.add_argument("--peers", type=int, default=1,
                    help="spread the flood over this many source addresses (127.0.0.2 on); default one peer")
    ap.add_argument("--json")
    ap.add_argument("--no-shutdown", action="store_true", help="skip the SIGTERM runs")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.idle + a.slow + 512
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, min(hard, need)), max(hard, need)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    log(f"client open-files limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")

    sim, imds, ntp = start_sim(a.binary)
    procs = [sim]
    try:
        ex, addr = start_exporter(a.binary, imds, ntp)
        procs.append(ex)
        time.sleep(3)  # a few probe runs first
        before = counters(scrape(addr))
        limits = open(f"/proc/{ex.p.pid}/limits").read()
        nofile = [l for l in limits.splitlines() if l.startswith("Max open files")][0].split()[3]
        log(f"exporter pid {ex.p.pid}, open-files limit {nofile}; flood: {a.idle} idle + {a.slow} slowloris for {a.attack_seconds:.0f}s")
        result = asyncio.run(flood(addr, ex.p.pid, a.idle, a.slow, a.attack_seconds, a.peers))
        result["peers"] = a.peers
        after = counters(scrape(addr))
        result["exporter_open_files_limit"] = int(nofile)
        result["probe_failures_before"] = before["failures"]
        result["probe_failures_after"] = after["failures"]
        result["probe_runs_during"] = {p: after["runs"].get(p, 0) - before["runs"].get(p, 0) for p in after["runs"]}
        result["exporter_alive"] = ex.p.poll() is None
        ex.stop()
        log("shutdown runs")
        reps = 0 if a.no_shutdown else a.shutdown_reps
        result["shutdown"] = [asyncio.run(shutdown_once(a.binary, imds, ntp, 20)) for _ in range(reps)]
    finally:
        for p in procs:
            p.stop()

    r = result
    sd = r["shutdown"]
    print(f"""
| what | figure |
|---|---|
| exporter's open-files limit (soft = hard) | {r['exporter_open_files_limit']} |
| idle connections from {ATTACKER if a.peers == 1 else f'{a.peers} peers'}: opened / refused at connect | {r['idle']['connected']} / {r['idle']['connect_errors']} (in {r['idle']['opened_in_s']} s) |
| idle connections closed by the exporter during the flood | {r['idle']['closed']} (median after {f(r['idle']['closed_after_p50_s'], '.3f')} s, last after {f(r['idle']['closed_after_max_s'], '.2f')} s) |
| slowloris connections (1 byte/s, opened first) / closed by the exporter | {r['slow']['connected']} / {r['slow']['closed']}: {r['slow']['closed_after_1s']} held a place until the header timeout closed them, the last after {f(r['slow']['closed_after_max_s'], '.2f')} s; the rest were closed within a second (refused, or evicted to make room) |
| attacker connections still open at the end | {r['still_open_at_end']} |
| /metrics from {SCRAPER}, new connection each: answered / failed | {r['scrapes']} / {r['scrape_failures']} |
| /metrics latency p50 / p99 / max | {r['scrape_p50_ms']:.1f} / {r['scrape_p99_ms']:.1f} / {f(r['scrape_max_ms'], '.1f')} ms |
| exporter RSS before / max during | {f(r['rss_start_mib'], '.1f')} / {f(r['rss_max_mib'], '.1f')} MiB |
| exporter open descriptors, max during | {r['fds_max']} |
| probe runs during the flood | {', '.join(f'{k} {v:.0f}' for k, v in sorted(r['probe_runs_during'].items()))} |
| probe failures before / after (`imds_probe_failures_total`, all reasons) | {f(r['probe_failures_before'], '.0f')} / {f(r['probe_failures_after'], '.0f')} |
""" + (f"""| SIGTERM with 20 idle + 20 half-sent + 20 streaming clients: exit codes | {sorted(set(s['exit_code'] for s in sd))} over {len(sd)} runs |
| time to exit after SIGTERM: median / max | {statistics.median(s['seconds'] for s in sd):.2f} / {max(s['seconds'] for s in sd):.2f} s |
""" if sd else ""))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")
    ok = (r["probe_failures_after"] == r["probe_failures_before"] and r["scrape_p99_ms"] < 50 and r["rss_max_mib"] < 32
          and r["scrape_failures"] == 0 and all(s["exit_code"] == 0 and s["seconds"] < 5 for s in sd)
          and r["slow"]["closed"] == r["slow"]["connected"] and (r["slow"]["closed_after_max_s"] or 0) <= 5 + 1)
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
