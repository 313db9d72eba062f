"""A tiny IMDS stand-in for the cases the simulator does not have (tests/sdk only; never src/).

Usage: python3 tests/sdk/hostile_imds.py [--port 0] [--mode NAME]
Prints "hostile IMDS on http://127.0.0.1:PORT" first. Listens on 127.0.0.1 only.

Control (like the simulator's /_sim/):
  POST /_hostile/mode/<name>     switch mode (400 lists the modes); resets the request log
  GET  /_hostile/log             the requests since the last switch: [{t, method, path, token, status}]
                                 (t in seconds since the switch; token: whether one was sent)

Every mode serves EC2's protocol (token PUT with TTL echo, tokens checked, IMDSv1 allowed: a
token-less GET works) except for the one thing it breaks, so an SDK's fallback shows: after a
token failure, credentials still arrive if and only if the SDK goes on token-less.
"""

from __future__ import annotations

import argparse
import datetime
import json
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLE = "hostile-demo-role"
TOKEN_PATH = "/latest/api/token"
CREDS = "/latest/meta-data/iam/security-credentials/"

MODES = {
    "healthy": "everything answers",
    "token-400": "the token PUT gets 400",
    "token-403": "the token PUT gets 403",
    "token-404": "the token PUT gets 404",
    "token-405": "the token PUT gets 405",
    "token-429": "the token PUT gets 429",
    "token-500": "the token PUT gets 500",
    "token-503": "the token PUT gets 503",
    "token-500-once": "the first token PUT gets 500, the rest work",
    "token-refused": "the token PUT's connection is closed without an answer; GETs work",
    "token-no-ttl": "the token PUT answers 200 without the TTL header",
    "token-empty": "the token PUT answers 200, TTL header, empty body",
    "v2only-token-429": "token PUT 429 and token-less GETs 401 (HttpTokens=required)",
    "v2only-token-500": "token PUT 500 and token-less GETs 401 (HttpTokens=required)",
    "creds-500": "token and role list work; the credentials GET gets 500",
    "creds-429": "token and role list work; the credentials GET gets 429",
    "creds-500-once": "the first credentials GET gets 500, the rest work",
    "creds-429-once": "the first credentials GET gets 429, the rest work",
    "role-500-twice": "the first two role-list GETs get 500, the rest work",
    "role-multi": "the role list has two lines: the role, then another",
    "role-trailing-newline": "the role list is the role and a newline",
    "code-error-with-keys": "the credentials JSON has every key but Code AssumeRoleUnauthorizedAccess",
    "no-code": "the credentials JSON has the keys but no Code, LastUpdated, Type (some emulators)",
    "big-100k": "a valid credentials JSON padded to 100 KiB (over the exporter's 64 KiB)",
    "drip": "the credentials body sent in 12 pieces 0.7 s apart (8 s in all; no gap reaches 1 s)",
    "expired": "credentials that expired an hour ago",
    "outage": "every request accepted and held 60 s unanswered (logged on arrival, for timings)",
    "hop-limit": "the token PUT held 60 s unanswered (logged on arrival); token-less GETs work",
    "hop-limit-v2-only": "the token PUT held 60 s unanswered; token-less GETs get 401",
}
HOLD = 60.0


class State:
    def __init__(self, mode: str):
        self.lock = threading.Lock()
        self.set(mode)

    def set(self, mode: str) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.mode = mode
            self.since = time.monotonic()
            self.log: list[dict] = []
            self.counts: dict[str, int] = {}
            self.tokens: set[str] = set()
            self.access_key = "ASIAHOSTILE" + secrets.token_hex(5).upper()

    def count(self, what: str) -> int:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1
            return self.counts[what]


STATE = State("healthy")


def credentials_document(mode: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    expiration = now + (datetime.timedelta(hours=-1) if mode == "expired" else datetime.timedelta(hours=6))
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    doc = {
        "Code": "AssumeRoleUnauthorizedAccess" if mode == "code-error-with-keys" else "Success",
        "LastUpdated": now.strftime(fmt),
        "Type": "AWS-HMAC",
        "AccessKeyId": STATE.access_key,
        "SecretAccessKey": "hostileSECRET" + secrets.token_hex(16),
        "Token": "hostileTOKEN" + secrets.token_hex(32),
        "Expiration": expiration.strftime(fmt),
    }
    if mode == "no-code":
        for k in ("Code", "LastUpdated", "Type"):
            del doc[k]
    if mode == "big-100k":
        doc = {"Padding": "x" * (100 * 1024), **doc}
    return json.dumps(doc, indent=2)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"
    sys_version = ""

    def log_message(self, format, *args):  # quiet
        pass

    def _record(self, status) -> None:
        # Into the log of the mode the request arrived in: a slow answer that ends after a switch
        # must not land in the next mode's log.
        log = getattr(self, "_log", STATE.log)
        with STATE.lock:
            log.append(
                {
                    "t": round(time.monotonic() - STATE.since, 3),
                    "method": self.command,
                    "path": self.path,
                    "token": "x-aws-ec2-metadata-token" in {k.lower() for k in self.headers.keys()},
                    "status": status,
                }
            )

    def _send(self, status: int, body: str = "", headers: dict | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self._record(status)

    def _hold(self) -> None:
        """Accepted and never answered: logged now, as "held"; the client's timeout ends it."""
        self._record("held")
        deadline = time.monotonic() + HOLD
        while time.monotonic() < deadline:
            time.sleep(0.05)
            # The client hung up: nothing more to wait for.
            try:
                if self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
        self.close_connection = True

    def _status(self, status: int) -> None:
        self._send(status, f"{status}\n")

    def do_POST(self):
        if self.path.startswith("/_hostile/mode/"):
            mode = self.path.rsplit("/", 1)[1]
            if mode not in MODES:
                body = json.dumps({"error": f"unknown mode {mode!r}", "modes": MODES})
                self.send_response(400)
            else:
                STATE.set(mode)
                body = json.dumps({"mode": mode, "does": MODES[mode]})
                self.send_response(200)
            data = body.encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self._status(405)

    def do_PUT(self):
        self._log = STATE.log
        mode = STATE.mode
        if mode in ("outage", "hop-limit", "hop-limit-v2-only"):
            return self._hold()
        if self.path != TOKEN_PATH:
            return self._status(405)
        n = STATE.count("token")
        fixed = {
            "token-400": 400, "token-403": 403, "token-404": 404, "token-405": 405,
            "token-429": 429, "token-500": 500, "token-503": 503,
            "v2only-token-429": 429, "v2only-token-500": 500,
        }
        if mode in fixed:
            return self._status(fixed[mode])
        if mode == "token-500-once" and n == 1:
            return self._status(500)
        if mode == "token-refused":
            self._record("closed")
            self.close_connection = True
            self.connection.close()
            return
        ttl = self.headers.get("x-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self._status(400)
        token = "" if mode == "token-empty" else "hostile-token-" + secrets.token_hex(16)
        if token:
            STATE.tokens.add(token)
        headers = {} if mode == "token-no-ttl" else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
        self._send(200, token, headers)

    def do_GET(self):
        if self.path == "/_hostile/log":
            with STATE.lock:
                body = json.dumps({"mode": STATE.mode, "requests": STATE.log})
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self._log = STATE.log
        mode = STATE.mode
        if mode == "outage":
            return self._hold()
        token = self.headers.get("x-aws-ec2-metadata-token")
        if token is not None and token not in STATE.tokens:
            return self._status(401)
        if token is None and (mode.startswith("v2only-") or mode == "hop-limit-v2-only"):
            return self._status(401)
        if self.path == CREDS:
            n = STATE.count("role")
            if mode == "role-500-twice" and n <= 2:
                return self._status(500)
            if mode == "role-multi":
                return self._send(200, f"{ROLE}\nanother-role")
            if mode == "role-trailing-newline":
                return self._send(200, f"{ROLE}\n")
            return self._send(200, ROLE)
        if self.path == CREDS + ROLE:
            n = STATE.count("credentials")
            if mode == "creds-500" or (mode == "creds-500-once" and n == 1):
                return self._status(500)
            if mode == "creds-429" or (mode == "creds-429-once" and n == 1):
                return self._status(429)
            body = credentials_document(mode)
            if mode == "drip":
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                pieces = 12
                step = -(-len(data) // pieces)
                try:
                    for i in range(0, len(data), step):
                        self.wfile.write(data[i : i + step])
                        self.wfile.flush()
                        if i + step < len(data):
                            time.sleep(0.7)
                    self._record(200)
                except (BrokenPipeError, ConnectionResetError):
                    self._record("client-hung-up")
                return
            return self._send(200, body)
        return self._status(404)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", default="healthy", choices=sorted(MODES))
    args = parser.parse_args()
    STATE.set(args.mode)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"hostile IMDS on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
