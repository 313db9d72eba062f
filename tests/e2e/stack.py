"""A small fleet on loopback: simulators, exporters and one real Prometheus server.

Used by tests/e2e/test_e2e.py (the end-to-end test) and scripts/render-dashboards (the pictures).
Python 3 standard library only.

- Every node is one `imds_exporter simulate` (fake IMDS + SNTP answerer, ports chosen by the
  kernel and read from its first lines) and one exporter pointed at it, on a free loopback port.
- A node may get exporter flags of its own (`node_args`), after the common `exporter_args`; in
  them `{sim}` stands for the node's simulator URL and `{workdir}` for the fleet's directory (the
  container endpoint and the STS stand-in are served by the node's simulator).
- Prometheus scrapes every exporter as job "imds" with `instance` set to the node's name (as the
  Kubernetes deployment sets it to the node name), every second, and evaluates copies of
  alerts/*.rules.yml in which every `for:` is shortened (time compression for the test).
- Nothing listens on or contacts anything but 127.0.0.1. The Python process and every process it
  starts are recorded in $E2E_PIDFILE (when set), so that the calling shell's trap can stop them
  even if Python dies or hangs, and `Stack.stop()` terminates them all.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (the exporter's listen port is not discoverable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, *, timeout=5.0, data=None):
    """(status, body) of one HTTP request; connection errors raise OSError."""
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_for(what, predicate, timeout, interval=0.25):
    """Poll `predicate` until it returns something truthy; raise TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, KeyError) as e:  # not up yet
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def shorten_for(rule_text, duration):
    """Rewrite every `for: <duration>` of a rule file; returns (text, number of rewrites)."""
    return re.subn(r"(?m)^(\s*)for:\s*\S+\s*$", lambda m: f"{m.group(1)}for: {duration}", rule_text)


def substitute(text, values):
    """Grafana's interpolation of `$name`, `${name}` and `${name:format}` from `values` (one place for
    tests/e2e/test_e2e.py and scripts/render_dashboards.py). A variable without a value, or a `$` left
    over, raises ValueError: a dashboard that gains a variable must gain its value here too."""

    def value(m):
        name = m.group(1) or m.group(2)
        if name not in values:
            raise ValueError(f"no value for the dashboard variable ${name} in {text!r}")
        return values[name]

    out = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, text)
    if "$" in out:
        raise ValueError(f"unsubstituted variable in {out!r}")
    return out


def dashboard_values(instance, *, rate_interval, interval, range_="5m", display=False):
    """The values Grafana gives the dashboards' variables for job="imds" and `instance` (".*": All).

    Multi-value variables set to All (`instance` on the fleet dashboard, `phase` on the node one)
    stand for `.*` in queries and read "All" in titles (`display=True`)."""
    every = "All" if display else ".*"
    return {"datasource": "", "job": "imds", "instance": every if instance == ".*" else instance,
            "phase": every, "__rate_interval": rate_interval, "__interval": interval, "__range": range_}


class PromError(RuntimeError):
    pass


class Prometheus:
    """The HTTP API of a Prometheus server."""

    def __init__(self, url):
        self.url = url

    def _api(self, path, params):
        status, body = http("GET", f"{self.url}{path}?{urllib.parse.urlencode(params, doseq=True)}", timeout=15)
        try:
            doc = json.loads(body)
        except ValueError:
            raise PromError(f"HTTP {status} from {path}: {body[:200]}") from None
        if doc.get("status") != "success":
            raise PromError(f"{doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self._api("/api/v1/query", params)

    def vector(self, expr):
        """Instant query -> list of (labels, float value)."""
        data = self.query(expr)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr, start, end, step):
        return self._api("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step})

    def label_values(self, label, match):
        return self._api(f"/api/v1/label/{label}/values", {"match[]": match})

    def rules(self):
        return self._api("/api/v1/rules", {})

    def alerts(self):
        """The active (pending and firing) alerts, with their labels and rendered annotations."""
        return self._api("/api/v1/alerts", {})["alerts"]


class Node:
    """One fake instance: a simulator and the exporter watching it."""

    def __init__(self, name):
        self.name = name
        self.sim_url = None
        self.ntp_addr = None
        self.exporter_port = None

    def switch(self, scenario):
        status, body = http("POST", f"{self.sim_url}/_sim/scenario/{scenario}", data=b"")
        if status != 200:
            raise RuntimeError(f"{self.name}: switching to {scenario}: HTTP {status} {body.strip()}")

    def clock_offset(self, seconds):
        status, body = http("POST", f"{self.sim_url}/_sim/clock-offset/{seconds}", data=b"")
        if status != 200:
            raise RuntimeError(f"{self.name}: clock offset {seconds}: HTTP {status} {body.strip()}")

    def container_switch(self, scenario):
        """The container endpoint's own scenario (IMDS keeps its own)."""
        status, body = http("POST", f"{self.sim_url}/_sim/container/scenario/{scenario}", data=b"")
        if status != 200:
            raise RuntimeError(f"{self.name}: container scenario {scenario}: HTTP {status} {body.strip()}")

    def sts_code(self, code):
        """The AWS error code the STS stand-in answers every request with (`auto`: judged again)."""
        status, body = http("POST", f"{self.sim_url}/_sim/sts/code/{code}", data=b"")
        if status != 200:
            raise RuntimeError(f"{self.name}: STS code {code}: HTTP {status} {body.strip()}")

    def state(self):
        return json.loads(http("GET", f"{self.sim_url}/_sim/state")[1])


class Stack:
    """Start with `start()`, always `stop()` (use it as a context manager)."""

    def __init__(self, binary, node_names, *, rotate_every="20s", lifetime="1h", interval="1s",
                 scrape_interval="1s", rule_for="5s", exporter_args=(), node_args=None, workdir=None, log=print):
        self.binary = str(binary)
        self.nodes = [Node(n) for n in node_names]
        self.rotate_every, self.lifetime, self.interval = rotate_every, lifetime, interval
        self.scrape_interval, self.rule_for = scrape_interval, rule_for
        self.exporter_args = list(exporter_args)
        self.node_args = {name: list(args) for name, args in (node_args or {}).items()}
        unknown = sorted(set(self.node_args) - set(node_names))
        if unknown:
            raise ValueError(f"node_args for nodes not in the fleet: {unknown}")
        self.own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="imds-e2e."))
        self.log = log
        self.procs = []  # (name, Popen, log path)
        self.prom = None
        self.prom_started = None
        self.rule_rewrites = {}

    # ------------------------------------------------------------------------------ processes
    def _spawn(self, name, argv):
        log_path = self.workdir / f"{name}.log"
        log_file = open(log_path, "wb")
        # A session of its own: a Ctrl-C in the terminal reaches Python, which stops them in order.
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=self.workdir)
        log_file.close()
        self.procs.append((name, proc, log_path))
        self._write_pidfile()
        return proc, log_path

    def _write_pidfile(self, include_self=True):
        """This process first (so the trap can make it clean up), then every child still running.

        Only into a file the caller created: a trap that already ran has removed it."""
        pidfile = os.environ.get("E2E_PIDFILE")
        if pidfile and os.path.exists(pidfile):
            alive = [os.getpid()] if include_self else []
            alive += [p.pid for _, p, _ in self.procs if p.returncode is None]
            Path(pidfile).write_text("".join(f"{pid}\n" for pid in alive))

    def _check_alive(self):
        for name, proc, log_path in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(log_path)}")

    @staticmethod
    def tail(log_path, lines=15):
        try:
            return "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _start_node(self, node):
        _, sim_log = self._spawn(f"sim-{node.name}", [
            self.binary, "simulate", "--listen", "127.0.0.1:0", "--ntp-listen", "127.0.0.1:0",
            "--rotate-every", self.rotate_every, "--lifetime", self.lifetime, "--log.level", "warn"])

        def sim_addresses():
            self._check_alive()
            text = sim_log.read_text(errors="replace")
            imds = re.search(r"IMDS simulator on (http://127\.0\.0\.1:\d+)", text)
            ntp = re.search(r"SNTP answerer on (127\.0\.0\.1:\d+)", text)
            return (imds.group(1), ntp.group(1)) if imds and ntp else None

        node.sim_url, node.ntp_addr = wait_for(f"the simulator of {node.name}", sim_addresses, 20)
        node.exporter_port = free_port()
        self._spawn(f"exporter-{node.name}", [
            self.binary,
            "--web.listen-address", f"127.0.0.1:{node.exporter_port}",
            "--imds.endpoint", node.sim_url,
            "--imds.interval", self.interval,
            "--ntp.server", node.ntp_addr,
            "--ntp.interval", self.interval,
            *self.exporter_args,
            *(a.replace("{sim}", node.sim_url).replace("{workdir}", str(self.workdir))
              for a in self.node_args.get(node.name, ()))])

    def _exporter_ready(self, node):
        self._check_alive()
        status, _ = http("GET", f"http://127.0.0.1:{node.exporter_port}/-/ready", timeout=2)
        return status == 200

    def _write_prometheus_config(self):
        rules_dir = self.workdir / "rules"
        rules_dir.mkdir(exist_ok=True)
        for path in sorted((ROOT / "alerts").glob("*.rules.yml")):
            text, n = shorten_for(path.read_text(), self.rule_for)
            (rules_dir / path.name).write_text(text)
            self.rule_rewrites[path.name] = n
        targets = "\n".join(
            f"      - targets: ['127.0.0.1:{n.exporter_port}']\n        labels: {{instance: '{n.name}'}}"
            for n in self.nodes)
        config = (
            "# Written by tests/e2e/stack.py\n"
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            f"  scrape_timeout: {self.scrape_interval}\n"
            f"  evaluation_interval: {self.scrape_interval}\n"
            "rule_files:\n"
            f"  - {rules_dir}/*.rules.yml\n"
            "scrape_configs:\n"
            "  - job_name: imds\n"
            "    static_configs:\n"
            f"{targets}\n")
        path = self.workdir / "prometheus.yml"
        path.write_text(config)
        return path

    def start(self):
        if not (os.path.isfile(PROMETHEUS) and os.access(PROMETHEUS, os.X_OK)):
            raise RuntimeError(f"{PROMETHEUS} not found (Debian's prometheus package; scripts/test-e2e installs it)")
        for node in self.nodes:
            self._start_node(node)
        for node in self.nodes:
            wait_for(f"/-/ready of the exporter of {node.name}", lambda: self._exporter_ready(node), 30)
        config = self._write_prometheus_config()
        port = free_port()
        self._spawn("prometheus", [
            PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d",
            "--log.level=warn"])
        self.prom = Prometheus(f"http://127.0.0.1:{port}")
        self.prom_started = time.time()

        def prom_ready():
            self._check_alive()
            return http("GET", f"{self.prom.url}/-/ready", timeout=2)[0] == 200

        wait_for("Prometheus /-/ready", prom_ready, 60)
        want = len(self.nodes)
        wait_for(f"Prometheus to scrape all {want} exporters",
                 lambda: len(self.prom.vector('up{job="imds"} == 1 and on (instance) imds_probe_runs_total{probe="imds"} > 0')) == want,
                 60)
        return self

    def stop(self):
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for _, proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._write_pidfile(include_self=False)  # all stopped: nothing left for the trap

    def cleanup(self, keep=False):
        self.stop()
        if self.own_workdir and not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)
