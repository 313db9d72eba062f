"""A tiny IMDS stand-in for the cases the simulator does not have (tests/sdk only; never src/).

Usage: python3 tests/sdk/hostile_imds.py [--port 0] [--mode NAME]
Prints "hostile IMDS on http://127.0.0.1:PORT" first. Listens on 127.0.0.1 only.

Control (like the simulator's /_sim/):
  POST /_hostile/mode/<name>     switch mode (400 lists the modes); resets the request log
  GET  /_hostile/log             the requests since the last switch: [{t, method, path, token, status}]
                                 (t in seconds since the switch; token: whether one was sent), and
                                 "decoy_hits": connections to the redirect mode's decoy since then

Every mode serves EC2's protocol (token PUT with TTL echo, tokens checked, IMDSv1 allowed: a
token-less GET works) except for the one thing it breaks, so an SDK's fallback shows: after a
token failure, credentials still arrive if and only if the SDK goes on token-less.

The last modes are the behaviours of tests/hostile.rs, served to every request as there (the
token PUT and every GET alike): garbage, redirect (302 to a decoy listener that accepts and
closes, and counts), headers-then-hang, endless-chunked, huge-content-length, close-at-once,
teapot, and the "minimal look-alike" (minimal_imds() there). Where hostile.rs holds or streams for
30 s, these do for 60 s (HOLD), longer than any client's deadline; endless-chunked is paced
(8 KiB every 5 ms) so that it flows without filling a client's memory or the machine's CPU.
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
    # tests/hostile.rs, every request alike:
    "garbage": "every request gets bytes that are not HTTP, then the connection closes",
    "redirect": "every request gets 302 to a decoy listener that accepts and closes (counted)",
    "headers-then-hang": "every request gets a 200 head with Content-Length 100, then nothing for 60 s",
    "endless-chunked": "every request gets a 200 with a chunked body that flows for 60 s",
    "huge-content-length": "every request gets Content-Length 3000000000, 4 KiB, then nothing for 60 s",
    "close-at-once": "every connection is closed as soon as its request has arrived",
    "teapot": "every request gets 418 with an empty body",
    "minimal": "the least a look-alike may answer: a fixed token without TTL header, tokens required, "
    "a document with only AccessKeyId and Expiration, 500 elsewhere",
}
# The modes of tests/hostile.rs that answer every request the same raw way.
RAW_MODES = {"garbage", "redirect", "headers-then-hang", "endless-chunked", "huge-content-length",
             "close-at-once", "teapot"}
MINIMAL_TOKEN = "minimal-token"
MINIMAL_ROLE = "minimal-role"
HOLD = 60.0


# The redirect mode's decoy: a listener that accepts and closes (hostile.rs's decoy); its port,
# and the connections it got since the last switch.
DECOY = {"port": 0, "hits": 0}


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
            DECOY["hits"] = 0

    def count(self, what: str) -> int:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1
            return self.counts[what]


STATE = State("healthy")


def start_decoy() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    DECOY["port"] = sock.getsockname()[1]

    def serve() -> None:
        while True:
            conn, _ = sock.accept()
            with STATE.lock:
                DECOY["hits"] += 1
            conn.close()

    threading.Thread(target=serve, daemon=True).start()


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
            if self._client_gone():
                break
        self.close_connection = True

    def _status(self, status: int) -> None:
        self._send(status, f"{status}\n")

    def _client_gone(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _raw(self, mode: str) -> None:
        """tests/hostile.rs's behaviours, byte for byte, then the connection ends."""
        self.close_connection = True
        out = self.wfile
        try:
            if mode == "garbage":
                out.write(b"\x00\x01\x02 not http at all\r\n\r\n")
                self._record("garbage")
            elif mode == "redirect":
                out.write(
                    f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{DECOY['port']}/latest/api/token\r\n"
                    "Content-Length: 0\r\n\r\n".encode()
                )
                self._record(302)
            elif mode == "teapot":
                out.write(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n")
                self._record(418)
            elif mode == "close-at-once":
                self._record("closed")
            elif mode in ("headers-then-hang", "huge-content-length"):
                length = 100 if mode == "headers-then-hang" else 3_000_000_000
                out.write(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode())
                if mode == "huge-content-length":
                    out.write(b"x" * 4096)
                out.flush()
                self._hold()
            elif mode == "endless-chunked":
                out.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                self._record("streaming")
                chunk = b"2000\r\n" + b"x" * 0x2000 + b"\r\n"
                deadline = time.monotonic() + HOLD
                while time.monotonic() < deadline:
                    out.write(chunk)
                    out.flush()
                    time.sleep(0.005)
            out.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

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
        if mode in RAW_MODES:
            return self._raw(mode)
        if mode == "minimal":
            return self._minimal()
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
                body = json.dumps({"mode": STATE.mode, "requests": STATE.log, "decoy_hits": DECOY["hits"]})
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
        if mode in RAW_MODES:
            return self._raw(mode)
        if mode == "minimal":
            return self._minimal()
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


    def _minimal(self) -> None:
        """minimal_imds() of tests/hostile.rs: a token without the TTL header (any PUT of the token
        path, whatever its TTL header), tokens required, a document with only AccessKeyId and
        Expiration, 500 on every other path; Connection: close."""
        self.close_connection = True
        tokened = self.headers.get("x-aws-ec2-metadata-token") == MINIMAL_TOKEN
        if self.command == "PUT" and self.path == TOKEN_PATH:
            status, body = 200, MINIMAL_TOKEN
        elif not tokened:
            status, body = 401, ""
        elif self.command == "GET" and self.path == CREDS:
            status, body = 200, MINIMAL_ROLE
        elif self.command == "GET" and self.path == CREDS + MINIMAL_ROLE:
            expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=6)
            body = json.dumps({"AccessKeyId": "ASIAMINIMALEXAMPLE01",
                               "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ")})
            status = 200
        else:
            status, body = 500, ""
        data = body.encode()
        self.send_response_only(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self._record(status)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up on its request (its deadline, a reset) is what some modes are
        # for; anything else is a bug here and shows.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", default="healthy", choices=sorted(MODES))
    args = parser.parse_args()
    STATE.set(args.mode)
    start_decoy()
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"hostile IMDS on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
