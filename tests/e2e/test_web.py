"""The web configuration file with real clients: curl, openssl s_client and a real Prometheus.

Run by scripts/test-web (the `web` step of scripts/test). Everything on 127.0.0.1; Python 3
standard library, the openssl and curl commands, Debian's prometheus. Checks:

- curl over TLS with the test CA and basic auth: 200 with the metrics; a wrong password, an
  unknown user or none: 401; /-/healthy without credentials: 200; without the CA: a failed
  verification; plain HTTP to the TLS port: no metrics.
- curl with mutual TLS: a client certificate from the CA is served; none, or one from another CA,
  fails the handshake.
- The server certificate swapped on disk (written aside and renamed, as rotation tools and the
  kubelet do): the next connection (openssl s_client) gets the new serial, and curl still works.
- A real Prometheus scraping over TLS with basic auth and with mutual TLS: `up` is 1 and the
  exporter's series arrive; with a wrong password or no client certificate `up` is 0 and the
  target's error says why (401, or the handshake).

Prints `web: N passed, M failed` last; exits 1 if anything failed.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import PROMETHEUS, Prometheus, free_port, http, wait_for  # noqa: E402

BINARY = os.environ.get("IMDS_EXPORTER_BIN") or str(Path(__file__).resolve().parents[2] / "target/debug/imds_exporter")
PASSWORD = "scrape-secret"
# bcrypt (cost 10) of PASSWORD, as `htpasswd -nBC 10 "" | tr -d ':\n'` makes one.
HASH = "$2b$10$YE17zEzuGRtyoMneU1Ye2OG2U1GsS5eHmL0wf5gdSuXdzCcrXZuk2"

results = {"passed": 0, "failed": 0}


def check(what, ok, detail=""):
    if ok:
        results["passed"] += 1
        print(f"ok: {what}")
    else:
        results["failed"] += 1
        print(f"FAILED: {what} {detail}")


def run(*argv, cwd=None):
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=60)


class Pki:
    """A CA and its certificates, made with the openssl command."""

    def __init__(self, dir, name):
        self.dir, self.name = dir, name
        self.serial = 1000
        self._ec_key(f"{name}-ca.key")
        run("openssl", "req", "-x509", "-new", "-key", f"{name}-ca.key", "-out", f"{name}-ca.crt", "-days", "2",
            "-subj", f"/CN={name} test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", cwd=dir).check_returncode()

    def _ec_key(self, file):
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file,
            cwd=self.dir).check_returncode()

    def issue(self, stem, cn, usage):
        """stem.crt and stem.key, written aside and renamed into place; returns the serial."""
        self.serial += 1
        self._ec_key(f"{stem}.key.new")
        run("openssl", "req", "-new", "-key", f"{stem}.key.new", "-out", f"{stem}.csr", "-subj", f"/CN={cn}",
            cwd=self.dir).check_returncode()
        ext = self.dir / f"{stem}.ext"
        san = "subjectAltName=DNS:localhost,DNS:imds-exporter,IP:127.0.0.1\n" if usage == "serverAuth" else ""
        ext.write_text(f"{san}extendedKeyUsage={usage}\n")
        run("openssl", "x509", "-req", "-in", f"{stem}.csr", "-CA", f"{self.name}-ca.crt", "-CAkey",
            f"{self.name}-ca.key", "-set_serial", str(self.serial), "-days", "2", "-extfile", ext.name,
            "-out", f"{stem}.crt.new", cwd=self.dir).check_returncode()
        os.replace(self.dir / f"{stem}.key.new", self.dir / f"{stem}.key")
        os.replace(self.dir / f"{stem}.crt.new", self.dir / f"{stem}.crt")
        return self.serial


class Procs:
    def __init__(self, workdir):
        self.workdir, self.procs = workdir, []

    def spawn(self, name, argv):
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=self.workdir, start_new_session=True)
        self.procs.append(p)
        pidfile = os.environ.get("E2E_PIDFILE")
        if pidfile and os.path.exists(pidfile):
            Path(pidfile).write_text("".join(f"{pid}\n" for pid in [os.getpid()] + [q.pid for q in self.procs]))
        return p, log

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def curl(port, path, *args):
    """(exit code, HTTP status, body) of curl to https://localhost:port (resolved to 127.0.0.1)."""
    r = run("curl", "-sS", "--max-time", "10", "--resolve", f"localhost:{port}:127.0.0.1", "-o", "-",
            "-w", "\n%{http_code}", *args, f"https://localhost:{port}{path}")
    body, _, status = r.stdout.rpartition("\n")
    return r.returncode, status, body + r.stderr


def serial_of_next_connection(dir, port):
    s = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                        "-CAfile", str(dir / "main-ca.crt")], input="", capture_output=True, text=True, timeout=30)
    x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=s.stdout, capture_output=True, text=True)
    text = x.stdout.strip().removeprefix("serial=")
    return int(text, 16) if text else None


def main():
    workdir = Path(tempfile.mkdtemp(prefix="imds-web-"))
    procs = Procs(workdir)
    try:
        main_pki, other = Pki(workdir, "main"), Pki(workdir, "other")
        first_serial = main_pki.issue("server", "imds-exporter", "serverAuth")
        main_pki.issue("client", "prometheus", "clientAuth")
        other.issue("intruder", "intruder", "clientAuth")
        (workdir / "auth.yml").write_text(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            f"basic_auth_users:\n  prometheus: '{HASH}'\n"
            "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
        (workdir / "mtls.yml").write_text(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: main-ca.crt\n")

        _, sim_log = procs.spawn("sim", [BINARY, "simulate", "--listen", "127.0.0.1:0", "--ntp-listen", "127.0.0.1:0"])

        def sim_addresses():
            import re
            text = sim_log.read_text(errors="replace")
            imds = re.search(r"IMDS simulator on (http://127\.0\.0\.1:\d+)", text)
            ntp = re.search(r"SNTP answerer on (127\.0\.0\.1:\d+)", text)
            return (imds.group(1), ntp.group(1)) if imds and ntp else None

        imds, ntp = wait_for("the simulator", sim_addresses, 20)
        ports = {}
        for name in ("auth", "mtls"):
            ports[name] = free_port()
            procs.spawn(f"exporter-{name}", [
                BINARY, "--web.listen-address", f"127.0.0.1:{ports[name]}", "--imds.endpoint", imds,
                "--ntp.server", ntp, "--imds.interval", "1s", "--collector.ethtool=false",
                "--web.config.file", str(workdir / f"{name}.yml")])
        ca = ["--cacert", str(workdir / "main-ca.crt")]
        wait_for("the TLS exporter", lambda: curl(ports["auth"], "/-/healthy", *ca)[1] == "200", 20)
        wait_for("the mTLS exporter", lambda: curl(ports["mtls"], "/-/healthy", *ca, "--cert", str(workdir / "client.crt"),
                                                   "--key", str(workdir / "client.key"))[1] == "200", 20)

        # ---------------------------------------------------------------- curl: TLS, basic auth
        a = ports["auth"]
        code, status, body = curl(a, "/metrics", *ca, "-u", f"prometheus:{PASSWORD}", "-D", "/dev/stderr")
        check("curl over TLS with basic auth: 200 with the metrics", status == "200" and "imds_probe_success" in body, body[:200])
        check("the configured header is sent", "x-content-type-options: nosniff" in body.lower(), body[-400:])
        for label, args in [("a wrong password", ["-u", "prometheus:wrong"]), ("an unknown user", ["-u", f"other:{PASSWORD}"]),
                            ("no credentials", [])]:
            code, status, body = curl(a, "/metrics", *ca, *args)
            check(f"curl with {label}: 401", status == "401", f"{code} {status} {body[:200]}")
        code, status, _ = curl(a, "/-/healthy", *ca)
        check("/-/healthy without credentials: 200", status == "200", status)
        code, status, body = curl(a, "/metrics", "-u", f"prometheus:{PASSWORD}")
        check("curl without the CA: verification fails (exit 60)", code == 60, f"{code} {body[:200]}")
        r = run("curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{a}/metrics")
        check("plain HTTP to the TLS port: no metrics", "imds_probe_success" not in r.stdout, r.stdout[:200])

        # ---------------------------------------------------------------- curl: mutual TLS
        m = ports["mtls"]
        client = ["--cert", str(workdir / "client.crt"), "--key", str(workdir / "client.key")]
        code, status, body = curl(m, "/metrics", *ca, *client)
        check("curl with a client certificate from the CA: 200", status == "200" and "imds_probe_success" in body, f"{code} {status}")
        code, status, body = curl(m, "/metrics", *ca)
        check("curl without a client certificate: no answer (handshake refused)", status == "000" and code != 0, f"{code} {status} {body[:200]}")
        code, status, body = curl(m, "/metrics", *ca, "--cert", str(workdir / "intruder.crt"), "--key", str(workdir / "intruder.key"))
        check("curl with a certificate from another CA: no answer", status == "000" and code != 0, f"{code} {status} {body[:200]}")

        # ---------------------------------------------------------------- certificate swap
        before = serial_of_next_connection(workdir, a)
        check("the server certificate is the one on disk", before == first_serial, f"{before} != {first_serial}")
        second_serial = main_pki.issue("server", "imds-exporter", "serverAuth")
        after = serial_of_next_connection(workdir, a)
        check("after the swap on disk, the next connection gets the new certificate", after == second_serial,
              f"{after} != {second_serial}")
        code, status, _ = curl(a, "/metrics", *ca, "-u", f"prometheus:{PASSWORD}")
        check("curl still verifies and is served after the swap", status == "200", f"{code} {status}")

        # ---------------------------------------------------------------- a real Prometheus
        d = workdir

        def job(name, port, tls, extra=""):
            return (f"  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {d}/main-ca.crt\n"
                    f"      server_name: imds-exporter\n{tls}{extra}"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")

        client_tls = f"      cert_file: {d}/client.crt\n      key_file: {d}/client.key\n"
        config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
                  + job("tls-basic-auth", a, "", f"    basic_auth:\n      username: prometheus\n      password: {PASSWORD}\n")
                  + job("wrong-password", a, "", "    basic_auth:\n      username: prometheus\n      password: wrong\n")
                  + job("mtls", m, client_tls)
                  + job("mtls-no-certificate", m, ""))
        (d / "prometheus.yml").write_text(config)
        port = free_port()
        procs.spawn("prometheus", [PROMETHEUS, f"--config.file={d}/prometheus.yml", f"--storage.tsdb.path={d}/tsdb",
                                   f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
        prom = Prometheus(f"http://127.0.0.1:{port}")
        wait_for("Prometheus /-/ready", lambda: http("GET", f"{prom.url}/-/ready", timeout=2)[0] == 200, 60)

        def up(job_name):
            v = prom.vector(f'up{{job="{job_name}"}}')
            return v[0][1] if v else None

        try:
            wait_for("every target scraped", lambda: all(up(j) is not None for j in
                     ("tls-basic-auth", "wrong-password", "mtls", "mtls-no-certificate")), 60)
            wait_for("up of the good targets", lambda: up("tls-basic-auth") == 1 and up("mtls") == 1, 30)
        except TimeoutError as e:
            print(e)
        check("Prometheus over TLS with basic auth: up 1", up("tls-basic-auth") == 1, up("tls-basic-auth"))
        check("Prometheus with mutual TLS: up 1", up("mtls") == 1, up("mtls"))
        series = prom.vector('imds_probe_success{job="tls-basic-auth", probe="imds"}')
        check("the exporter's series reach Prometheus over TLS", bool(series) and series[0][1] == 1.0, series)
        check("Prometheus with a wrong password: up 0", up("wrong-password") == 0, up("wrong-password"))
        check("Prometheus without a client certificate: up 0", up("mtls-no-certificate") == 0, up("mtls-no-certificate"))
        _, text = http("GET", f"{prom.url}/api/v1/targets", timeout=10)
        import json
        errors = {t["labels"]["job"]: t.get("lastError", "") for t in json.loads(text)["data"]["activeTargets"]}
        check("the wrong password's error is the 401", "401" in errors.get("wrong-password", ""), errors.get("wrong-password"))
        check("the missing certificate's error is the TLS refusal",
              any(w in errors.get("mtls-no-certificate", "").lower() for w in ("tls", "certificate", "reset", "eof")),
              errors.get("mtls-no-certificate"))
    finally:
        procs.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"web: {results['passed']} passed, {results['failed']} failed")
    return 0 if results["failed"] == 0 and results["passed"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
