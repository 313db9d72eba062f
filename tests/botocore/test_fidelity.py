"""The simulator's fidelity, proven with the real botocore.

`imds_exporter simulate` is only useful if an SDK behaves against it as it does against EC2's
IMDS. These tests point the real botocore at the simulator (AWS_EC2_METADATA_SERVICE_ENDPOINT)
and assert what it resolves in each scenario, including the incident the exporter exists for: a
client created during an IMDS outage never gets credentials, even after IMDS is back.

Safety: everything stays on 127.0.0.1. botocore never sends an AWS API request: credentials are
checked as resolved objects and requests are signed locally (SigV4Auth on an AWSRequest does no
I/O); the one client call goes to a 127.0.0.1 port that refuses connections.

What botocore does with IMDS (botocore/utils.py, IMDSFetcher and InstanceMetadataFetcher, 1.x;
read in botocore 1.44):
- _fetch_metadata_token(), the IMDSv2 token PUT:
    200 -> the token; 404/403/405 -> None (IMDSv1 fallback); 400 -> BadIMDSRequestError, which
    retrieve_iam_role_credentials() turns into "no credentials" (no fallback);
    ReadTimeoutError -> None at once, NOT retried even with more attempts (the hop-limit case:
    the PUT's answer never arrives, botocore carries on token-less);
    connection errors (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError) and
    any other status (401, 429, 5xx) -> tried again up to AWS_METADATA_SERVICE_NUM_ATTEMPTS
    (default 1), then None: botocore falls back to IMDSv1 then too.
- _get_request(), the role list and credentials GETs: anything but a non-empty 200 (and, for the
  credentials, valid JSON) is tried again up to NUM_ATTEMPTS times, then _RetriesExceededError ->
  no credentials. Timeouts are AWS_METADATA_SERVICE_TIMEOUT, default 1 s, per request.
- A 200 credentials document without AccessKeyId/SecretAccessKey/Token/Expiration (e.g.
  "Code": "AssumeRoleUnauthorizedAccess") -> no credentials.
- _evaluate_expiration(): if the document expires within 15 min (the advisory refresh window that
  create_credential_resolver passes as ec2_credential_refresh_window) + 2..10 min of jitter,
  botocore logs "Attempting credential expiration extension ..." (INFO) and moves the expiry it
  keeps to now + 17..25 min: expired credentials are accepted and used.
- The session caches what it resolved; a client keeps the credentials it was created with. If
  they were None, every call raises NoCredentialsError at signing time, forever.
"""

from __future__ import annotations

import ctypes
import datetime
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError, MetadataRetrievalError, NoCredentialsError

REPO = Path(__file__).resolve().parents[2]

# The contract's scenario names (src/sim/scenario.rs, NAMES).
SCENARIOS = [
    "healthy",
    "outage",
    "refused",
    "throttle",
    "throttle-partial",
    "slow",
    "jitter",
    "server-error",
    "hop-limit",
    "hop-limit-v2-only",
    "imdsv2-only",
    "no-role",
    "code-error",
    "expired",
    "expiring",
    "stale",
    "rotate-late",
    "malformed",
    "truncated",
    "huge",
]

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
CREDS_PATH = "/latest/meta-data/iam/security-credentials/"

# botocore's defaults: 1 s per IMDS request, 1 attempt. A scenario that makes botocore wait for
# timeouts costs it about 1 s per timed-out request; the bounds below are generous on purpose.
BOTOCORE_TIMEOUT = 1.0
SLOW_MACHINE_SLACK = 15.0


def _die_with_parent() -> None:
    """Runs in the simulator's child process: SIGTERM it if pytest dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Simulator:
    """A running `imds_exporter simulate` and plain-HTTP access to it (no proxies, no SDK)."""

    def __init__(self, url: str, proc: subprocess.Popen, logdir: Path):
        self.url = url
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1", url
        self.host, self.port = parts.hostname, parts.port
        self.proc = proc
        self.logdir = logdir

    def request(self, method, path, headers=None, body=None, timeout=10.0):
        """Returns (status, headers as a lower-cased dict, body text)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read().decode("utf-8", "replace")
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def control(self, method, path, body=None):
        status, _, text = self.request(method, path, body=body)
        return status, json.loads(text)

    def switch(self, scenario: str) -> dict:
        status, doc = self.control("POST", f"/_sim/scenario/{scenario}")
        assert status == 200, doc
        return doc

    def scenario(self) -> str:
        status, doc = self.control("GET", "/_sim/scenario")
        assert status == 200, doc
        return doc["scenario"]

    def state(self) -> dict:
        status, doc = self.control("GET", "/_sim/state")
        assert status == 200, doc
        return doc

    def count(self, group: str, status: str) -> int:
        """How many requests of a path group ("token", "role", "credentials", ...) got `status`
        ("200", "429", "none" for never answered, "reset" for refused)."""
        return self.state()["requests"].get(group, {}).get(status, 0)

    def token(self, ttl: int = 21600) -> str:
        status, headers, body = self.request("PUT", TOKEN_PATH, {TTL_HEADER: str(ttl)})
        assert status == 200, (status, body)
        return body

    def credentials_document(self, imdsv1: bool = False) -> dict:
        """The credentials document, fetched the IMDSv2 way (what botocore should have seen), or
        token-less (where the token PUT is never answered)."""
        headers = {} if imdsv1 else {TOKEN_HEADER: self.token()}
        status, _, role = self.request("GET", CREDS_PATH, headers)
        assert status == 200, role
        status, _, body = self.request("GET", CREDS_PATH + role.splitlines()[0], headers)
        assert status == 200, body
        return json.loads(body)


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    binary = os.environ.get("IMDS_EXPORTER_BIN") or str(REPO / "target" / "debug" / "imds_exporter")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no imds_exporter binary at {binary}: run `cargo build` or set IMDS_EXPORTER_BIN")
    logdir = tmp_path_factory.mktemp("simulator")
    stdout_path, stderr_path = logdir / "stdout", logdir / "stderr"
    # The simulator's own env twins (IMDS_EXPORTER_SIM_*) must not change what it does here.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMDS_EXPORTER_")}
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [binary, "simulate", "--listen", "127.0.0.1:0", "--rotate-every", "1h", "--lifetime", "6h"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            preexec_fn=_die_with_parent,
        )
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            m = re.search(r"^IMDS simulator on (http://127\.0\.0\.1:\d+)$", stdout_path.read_text(), re.M)
            if m:
                url = m.group(1)
            elif proc.poll() is not None:
                pytest.fail(f"simulator exited {proc.returncode}: {stderr_path.read_text()}")
            else:
                time.sleep(0.05)
        if url is None:
            pytest.fail(f"simulator printed no URL in 30 s: {stdout_path.read_text()!r}")
        yield Simulator(url, proc, logdir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def aws_env(sim, monkeypatch, tmp_path):
    """A hermetic botocore: IMDS is the simulator and nothing else can supply credentials.

    Every AWS_* and BOTO_* variable is removed (access keys, profiles, container and web-identity
    credentials, IMDS settings), and so are proxies (botocore would send IMDS traffic through
    them). The shared files are empty, HOME is a fresh directory (no ~/.aws, ~/.boto), and every
    test starts in `healthy`.
    """
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    for name in list(os.environ):
        if name.startswith(("AWS_", "BOTO_")) or name.lower() in proxies:
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", sim.url)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("BOTO_CONFIG", str(empty))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    sim.switch("healthy")
    yield


@pytest.fixture
def refused_port():
    """A 127.0.0.1 port bound and not listening: every connection to it is refused, and nothing
    else can take it while the test runs. Client calls go there, never to AWS."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


def resolve():
    """A fresh botocore session's credentials (None when the chain found none), and the time the
    resolution took."""
    t0 = time.monotonic()
    creds = botocore.session.Session().get_credentials()
    return creds, time.monotonic() - t0


def signed_headers(creds) -> dict:
    """Signs a made-up request locally (SigV4Auth does no I/O) and returns its headers."""
    request = AWSRequest(method="GET", url="https://sts.example.invalid/?Action=GetCallerIdentity")
    SigV4Auth(creds, "sts", "us-east-1").add_auth(request)
    return dict(request.headers)


def assert_signs_with(creds, access_key_id: str, token: str) -> None:
    headers = signed_headers(creds)
    assert f"Credential={access_key_id}/" in headers["Authorization"]
    assert headers["X-Amz-Security-Token"] == token


def parse_expiration(value: str) -> datetime.datetime:
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def sts_client(session, port):
    # One attempt and short timeouts: a signed request would only meet a refused port anyway.
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1)
    return session.create_client("sts", endpoint_url=f"http://127.0.0.1:{port}", config=config)


# --- healthy --------------------------------------------------------------------------------


def test_healthy_botocore_resolves_the_simulators_credentials_as_iam_role(sim):
    creds, elapsed = resolve()
    assert creds is not None, "botocore found no credentials in healthy"
    assert creds.method == "iam-role"
    assert elapsed < SLOW_MACHINE_SLACK
    frozen = creds.get_frozen_credentials()
    state = sim.state()
    doc = sim.credentials_document()
    assert frozen.access_key == state["credentials"]["access_key_id"] == doc["AccessKeyId"]
    assert frozen.secret_key == doc["SecretAccessKey"]
    assert frozen.token == doc["Token"]
    # Six hours ahead: botocore keeps the Expiration as served, no extension.
    assert creds._expiry_time == parse_expiration(doc["Expiration"])  # noqa: SLF001
    assert_signs_with(creds, doc["AccessKeyId"], doc["Token"])


def test_healthy_botocore_uses_imdsv2_first(sim):
    tokens_before = sim.count("token", "200")
    creds, _ = resolve()
    assert creds is not None
    assert sim.count("token", "200") == tokens_before + 1


# --- the incident ---------------------------------------------------------------------------


def test_client_created_during_outage_keeps_failing_after_imds_recovers_while_a_new_client_works(
    sim, refused_port
):
    sim.switch("outage")
    session = botocore.session.Session()
    t0 = time.monotonic()
    stale_client = sts_client(session, refused_port)
    created_in = time.monotonic() - t0
    # Token PUT: read timeout (1 s), then the token-less role GET: read timeout (1 s).
    assert BOTOCORE_TIMEOUT * 0.9 <= created_in < SLOW_MACHINE_SLACK, created_in
    assert stale_client._request_signer._credentials is None  # noqa: SLF001 - what the client holds

    sim.switch("healthy")
    assert sim.scenario() == "healthy"
    assert sim.credentials_document()["AccessKeyId"]  # IMDS answers again

    # The same client never looks again: signing fails before any connection is attempted.
    for _ in range(2):
        with pytest.raises(NoCredentialsError):
            stale_client.get_caller_identity()

    # A client created now resolves afresh (the session cached None, so it asks IMDS again),
    # signs, and gets as far as the network: the refused port.
    fresh_client = sts_client(session, refused_port)
    with pytest.raises(EndpointConnectionError):
        fresh_client.get_caller_identity()
    # And a brand-new session has the simulator's credentials and signs with them.
    creds, _ = resolve()
    assert creds is not None and creds.method == "iam-role"
    doc = sim.credentials_document()
    assert_signs_with(creds, doc["AccessKeyId"], doc["Token"])
    # The stale client is still broken.
    with pytest.raises(NoCredentialsError):
        stale_client.get_caller_identity()


# --- hop limit --------------------------------------------------------------------------------


def test_hop_limit_botocore_falls_back_to_imdsv1_after_the_token_timeout(sim):
    sim.switch("hop-limit")
    held_before = sim.count("token", "none")
    v1_before = sim.count("role", "200")
    creds, elapsed = resolve()
    # ReadTimeoutError on the PUT -> None -> token-less GETs, which IMDSv1 answers.
    assert creds is not None, "botocore did not fall back to IMDSv1"
    assert creds.method == "iam-role"
    assert BOTOCORE_TIMEOUT * 0.9 <= elapsed < SLOW_MACHINE_SLACK, elapsed
    assert sim.count("token", "none") == held_before + 1
    assert sim.count("role", "200") == v1_before + 1
    doc = sim.credentials_document(imdsv1=True)
    assert creds.get_frozen_credentials().access_key == doc["AccessKeyId"]


def test_hop_limit_token_timeout_is_not_retried_even_with_more_attempts(sim, monkeypatch):
    # botocore returns None on the first ReadTimeoutError of the PUT, whatever NUM_ATTEMPTS says.
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "3")
    sim.switch("hop-limit")
    held_before = sim.count("token", "none")
    creds, elapsed = resolve()
    assert creds is not None
    assert sim.count("token", "none") == held_before + 1
    assert elapsed < BOTOCORE_TIMEOUT * 2 + SLOW_MACHINE_SLACK


def test_hop_limit_with_imdsv1_disabled_in_the_client_raises_instead_of_falling_back(sim, monkeypatch):
    # With AWS_EC2_METADATA_V1_DISABLED, _get_request() raises MetadataRetrievalError when it has
    # no token, and nothing in the chain catches it: get_credentials() (and so create_client())
    # raises, instead of returning None as with every other IMDS failure.
    monkeypatch.setenv("AWS_EC2_METADATA_V1_DISABLED", "true")
    sim.switch("hop-limit")
    v1_before = sim.count("role", "200")
    with pytest.raises(MetadataRetrievalError, match="IMDSv1 has been disabled"):
        resolve()
    assert sim.count("role", "200") == v1_before


def test_hop_limit_v2_only_botocore_gets_no_credentials(sim):
    sim.switch("hop-limit-v2-only")
    unauthorized_before = sim.count("role", "401")
    creds, elapsed = resolve()
    # Token timeout -> token-less role GET -> 401 -> retries exceeded -> nothing.
    assert creds is None
    assert BOTOCORE_TIMEOUT * 0.9 <= elapsed < SLOW_MACHINE_SLACK, elapsed
    assert sim.count("role", "401") == unauthorized_before + 1


# --- throttling and server errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario,statuses",
    [("throttle", {"429"}), ("server-error", {"500", "503"})],
    ids=["throttle", "server-error"],
)
def test_http_errors_leave_botocore_without_credentials_after_one_attempt(sim, scenario, statuses):
    sim.switch(scenario)
    before = sim.state()["requests"]
    creds, elapsed = resolve()
    assert creds is None
    assert elapsed < SLOW_MACHINE_SLACK
    after = sim.state()["requests"]

    def answered(requests, group):
        return sum(n for status, n in requests.get(group, {}).items() if status in statuses)

    # One token PUT (error -> IMDSv1 fallback), one token-less role GET (error -> give up).
    assert answered(after, "token") - answered(before, "token") == 1
    assert answered(after, "role") - answered(before, "role") == 1
    assert answered(after, "credentials") == answered(before, "credentials")


def test_throttle_with_three_attempts_botocore_retries_each_request_and_still_fails(sim, monkeypatch):
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "3")
    sim.switch("throttle")
    tokens, roles = sim.count("token", "429"), sim.count("role", "429")
    creds, _ = resolve()
    assert creds is None
    assert sim.count("token", "429") == tokens + 3
    assert sim.count("role", "429") == roles + 3


def test_throttle_partial_with_three_attempts_botocore_sometimes_recovers(sim, monkeypatch):
    """With 30% of requests throttled, each of botocore's requests fails for good only if all 3
    attempts get 429 (0.3**3 = 2.7%). What is asserted holds for every trial (credentials, when
    resolved, are the simulator's; no request is tried more than 3 times) or has a failure
    probability below 1e-8 over 20 trials (at least one trial saw a 429 and still resolved)."""
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "3")
    sim.switch("throttle-partial?ratio=0.3")
    expected_key = sim.state()["credentials"]["access_key_id"]
    recovered = 0
    for _ in range(20):
        before = sim.state()["requests"]
        creds, _ = resolve()
        after = sim.state()["requests"]
        throttled = {
            g: after.get(g, {}).get("429", 0) - before.get(g, {}).get("429", 0)
            for g in ("token", "role", "credentials")
        }
        assert all(n <= 3 for n in throttled.values()), throttled
        if creds is not None:
            assert creds.get_frozen_credentials().access_key == expected_key
            if sum(throttled.values()) > 0:
                recovered += 1
    assert recovered >= 1, "no trial resolved credentials after a 429"


# --- IMDSv2-only, expiry ----------------------------------------------------------------------


def test_imdsv2_only_botocore_gets_credentials_with_a_token(sim):
    sim.switch("imdsv2-only")
    unauthorized_before = sim.count("role", "401")
    creds, _ = resolve()
    assert creds is not None and creds.method == "iam-role"
    assert sim.count("role", "401") == unauthorized_before, "botocore asked token-less"
    doc = sim.credentials_document()
    assert_signs_with(creds, doc["AccessKeyId"], doc["Token"])


@pytest.mark.parametrize("scenario", ["expired", "expiring"])
def test_expired_or_expiring_credentials_are_accepted_and_their_expiry_extended(sim, scenario, caplog):
    """botocore does not refuse credentials that IMDS serves already expired (or about to
    expire): it logs "Attempting credential expiration extension" and keeps them with an expiry
    of now + 15 min + 2..10 min. The application signs with them; AWS answers ExpiredToken."""
    sim.switch(scenario)
    doc = sim.credentials_document()
    served = parse_expiration(doc["Expiration"])
    if scenario == "expired":
        assert served < now_utc()
    else:
        assert now_utc() < served < now_utc() + datetime.timedelta(minutes=5)
    caplog.set_level(logging.INFO, logger="botocore.utils")
    start = now_utc()
    creds, _ = resolve()
    end = now_utc()
    assert creds is not None, "botocore refused the credentials"
    assert creds.get_frozen_credentials().access_key == doc["AccessKeyId"]
    assert any("Attempting credential expiration extension" in r.getMessage() for r in caplog.records)
    kept = creds._expiry_time  # noqa: SLF001 - the expiry botocore will act on
    assert kept > served
    slack = datetime.timedelta(seconds=2)
    assert start + datetime.timedelta(minutes=17) - slack <= kept <= end + datetime.timedelta(minutes=25) + slack


# --- what every scenario does to botocore (the docs table's botocore column) --------------------


@pytest.mark.parametrize(
    "scenario",
    ["stale", "rotate-late", "huge", "slow?delay=200ms", "jitter?p50=5ms&p99=20ms"],
)
def test_botocore_resolves_credentials_in(sim, scenario):
    sim.switch(scenario)
    creds, _ = resolve()
    assert creds is not None
    assert creds.get_frozen_credentials().access_key == sim.state()["credentials"]["access_key_id"]


@pytest.mark.parametrize(
    "scenario",
    [
        "outage",
        "refused",
        "jitter?p50=3s&p99=4s",
        "no-role",
        "code-error",
        "malformed",
        "truncated",
        "truncated?mode=transfer",
    ],
)
def test_botocore_gets_no_credentials_in(sim, scenario):
    sim.switch(scenario)
    creds, elapsed = resolve()
    assert creds is None
    assert elapsed < SLOW_MACHINE_SLACK


def test_truncated_transfer_announces_the_whole_document_and_closes_after_a_third(sim):
    token = sim.token()
    status, _, role = sim.request("GET", CREDS_PATH, {TOKEN_HEADER: token})
    assert status == 200
    path = CREDS_PATH + role.splitlines()[0]
    status, _, full = sim.request("GET", path, {TOKEN_HEADER: token})
    assert status == 200
    full = full.encode()

    sim.switch("truncated")  # the default, mode=body: a short but complete response
    status, headers, body = sim.request("GET", path, {TOKEN_HEADER: token})
    assert status == 200
    assert int(headers["content-length"]) == len(full) // 3
    assert body.encode() == full[: len(full) // 3]

    sim.switch("truncated?mode=transfer")
    conn = http.client.HTTPConnection(sim.host, sim.port, timeout=10)
    try:
        conn.request("GET", path, headers={TOKEN_HEADER: token})
        resp = conn.getresponse()
        assert resp.status == 200
        assert int(resp.getheader("Content-Length")) == len(full)
        with pytest.raises(http.client.IncompleteRead) as cut:
            resp.read()
        assert cut.value.partial == full[: len(full) // 3]
    finally:
        conn.close()


@pytest.mark.parametrize("attempts", [1, 3])
def test_truncated_transfer_is_a_short_body_to_botocore_invalid_json_retried_then_no_credentials(
    sim, monkeypatch, caplog, attempts
):
    """botocore sends IMDS requests with urllib3's enforce_content_length=False (httpsession.py),
    so a connection closed before the announced Content-Length is not an error to it: it takes
    the third it got as the whole body, finds invalid JSON and retries (up to NUM_ATTEMPTS), then
    has no credentials. The same path as `truncated` (mode=body); never a ConnectionClosedError."""
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", str(attempts))
    sim.switch("truncated?mode=transfer")
    before = sim.count("credentials", "200")
    caplog.set_level(logging.DEBUG, logger="botocore.utils")
    creds, elapsed = resolve()
    assert creds is None
    assert elapsed < SLOW_MACHINE_SLACK
    # Each attempt got the head (200) and a third of the body.
    assert sim.count("credentials", "200") == before + attempts
    messages = [r.getMessage() for r in caplog.records]
    invalid = [m for m in messages if "returned invalid json response" in m and CREDS_PATH in m]
    assert len(invalid) == attempts, messages
    assert not any("Caught retryable HTTP exception" in m for m in messages), messages
    assert any("Max number of attempts exceeded" in m for m in messages), messages


def test_slow_answers_beyond_one_second_are_timeouts_for_botocore(sim):
    # `slow` delays every answer by 2 s; botocore waits 1 s per request: the token PUT times out
    # (-> IMDSv1 fallback), then the role GET times out (-> no credentials).
    sim.switch("slow")
    tokens, roles = sim.count("token", "none"), sim.count("role", "none")
    creds, elapsed = resolve()
    assert creds is None
    assert BOTOCORE_TIMEOUT * 1.8 <= elapsed < SLOW_MACHINE_SLACK, elapsed
    # The simulator counts both requests as never answered once botocore has hung up.
    deadline = time.monotonic() + 10
    while (sim.count("token", "none"), sim.count("role", "none")) != (tokens + 1, roles + 1):
        assert time.monotonic() < deadline, sim.state()["requests"]
        time.sleep(0.05)


# --- the token protocol (plain HTTP) ------------------------------------------------------------


@pytest.mark.parametrize(
    "headers,status",
    [
        ({}, 400),
        ({TTL_HEADER: "0"}, 400),
        ({TTL_HEADER: "21601"}, 400),
        ({TTL_HEADER: "-1"}, 400),
        ({TTL_HEADER: "six hours"}, 400),
        ({TTL_HEADER: "21600", "X-Forwarded-For": "203.0.113.7"}, 403),
    ],
    ids=["no-ttl", "ttl-0", "ttl-21601", "ttl-negative", "ttl-not-a-number", "x-forwarded-for"],
)
def test_token_put_is_refused(sim, headers, status):
    got, _, _ = sim.request("PUT", TOKEN_PATH, headers)
    assert got == status


@pytest.mark.parametrize("ttl", ["1", "300", "21600"])
def test_token_put_echoes_the_ttl(sim, ttl):
    status, headers, body = sim.request("PUT", TOKEN_PATH, {TTL_HEADER: ttl})
    assert status == 200
    assert headers[TTL_HEADER.lower()] == ttl
    assert body.strip() == body and len(body) > 20


def test_get_with_a_bogus_token_is_unauthorized_and_a_valid_token_works(sim):
    status, _, _ = sim.request("GET", CREDS_PATH, {TOKEN_HEADER: "AQAEAbogusbogusbogus=="})
    assert status == 401
    status, _, body = sim.request("GET", CREDS_PATH, {TOKEN_HEADER: sim.token()})
    assert status == 200 and body


def test_token_expires_after_its_ttl(sim):
    token = sim.token(ttl=1)
    assert sim.request("GET", CREDS_PATH, {TOKEN_HEADER: token})[0] == 200
    time.sleep(1.5)
    assert sim.request("GET", CREDS_PATH, {TOKEN_HEADER: token})[0] == 401


def test_tokenless_get_works_with_imdsv1_and_is_unauthorized_in_imdsv2_only(sim):
    assert sim.request("GET", CREDS_PATH)[0] == 200
    sim.switch("imdsv2-only")
    assert sim.request("GET", CREDS_PATH)[0] == 401
    assert sim.request("GET", CREDS_PATH, {TOKEN_HEADER: sim.token()})[0] == 200


# --- the control API --------------------------------------------------------------------------


def test_unknown_scenario_is_a_400_listing_every_valid_name(sim):
    status, doc = sim.control("POST", "/_sim/scenario/meltdown")
    assert status == 400
    listed = doc["error"].split("known: ", 1)[1].split(", ")
    assert listed == SCENARIOS
    assert sim.scenario() == "healthy"


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_can_be_switched_to_and_is_reported(sim, name):
    doc = sim.switch(name)
    assert doc["scenario"] == name
    assert sim.scenario() == name
    assert sim.state()["scenario"] == name


def test_scenario_parameters_are_reported_and_bad_ones_refused(sim):
    assert sim.switch("slow?delay=1500ms")["params"] == {"delay": "1s 500ms"}
    assert sim.switch("throttle-partial?ratio=0.5")["params"] == {"ratio": 0.5}
    for bad in ["throttle-partial?ratio=2", "slow?delay=soon", "outage?delay=1s"]:
        status, doc = sim.control("POST", f"/_sim/scenario/{bad}")
        assert status == 400 and doc["error"], bad


def test_a_posted_yaml_script_plays_its_timeline(sim):
    status, doc = sim.control(
        "POST", "/_sim/script", body="- {at: 0s, scenario: throttle}\n- {at: 1s, scenario: healthy}\n"
    )
    assert status == 200 and doc == {"steps": 2}
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        current = sim.scenario()
        if not seen or seen[-1] != current:
            seen.append(current)
        if current == "healthy" and "throttle" in seen:
            break
        time.sleep(0.05)
    assert seen[-1] == "healthy" and "throttle" in seen, seen
    assert seen.index("throttle") < len(seen) - 1


def test_a_posted_json_script_is_accepted_and_a_bad_one_refused(sim):
    status, doc = sim.control("POST", "/_sim/script", body='[{"at": "0s", "scenario": "healthy"}]')
    assert status == 200 and doc == {"steps": 1}
    status, doc = sim.control("POST", "/_sim/script", body="- {at: 0s, scenario: meltdown}\n")
    assert status == 400 and "step 1" in doc["error"]


def test_the_documented_example_script_is_accepted(sim):
    text = (REPO / "docs" / "examples" / "outage-rehearsal.yml").read_text()
    try:
        status, doc = sim.control("POST", "/_sim/script", body=text)
        assert status == 200 and doc == {"steps": 3}
        assert sim.state()["script_running"] is True
    finally:
        # Replace it before its outage step (at 1m) could reach the tests that follow.
        status, _ = sim.control("POST", "/_sim/script", body="- {at: 0s, scenario: healthy}\n")
        assert status == 200


def test_clock_offset_is_reflected_in_the_state(sim):
    try:
        status, doc = sim.control("POST", "/_sim/clock-offset/2.5")
        assert status == 200 and doc == {"clock_offset_seconds": 2.5}
        assert sim.state()["clock_offset_seconds"] == 2.5
        status, _ = sim.control("POST", "/_sim/clock-offset/soon")
        assert status == 400
        assert sim.state()["clock_offset_seconds"] == 2.5
    finally:
        sim.control("POST", "/_sim/clock-offset/0")


def test_clock_drift_is_reflected_in_the_state_and_bounded(sim):
    try:
        status, doc = sim.control("POST", "/_sim/clock-drift/500")
        assert status == 200 and doc == {"clock_drift_ppm": 500}
        state = sim.state()
        assert state["clock_drift_ppm"] == 500
        assert state["clock_offset_seconds"] == 0
        assert state["ntp_offset_seconds"] >= 0
        for bad in ["100001", "-1e6", "nan", "fast"]:
            status, doc = sim.control("POST", f"/_sim/clock-drift/{bad}")
            assert status == 400 and "clock drift" in doc["error"], bad
        assert sim.state()["clock_drift_ppm"] == 500
    finally:
        sim.control("POST", "/_sim/clock-drift/0")


def test_an_unknown_truncated_mode_is_a_400_listing_the_valid_ones(sim):
    status, doc = sim.control("POST", "/_sim/scenario/truncated?mode=chunked")
    assert status == 400
    assert doc["error"] == 'mode="chunked": expected one of body, transfer'
    assert sim.scenario() == "healthy"
    assert sim.switch("truncated")["params"] == {"mode": "body"}
    assert sim.switch("truncated?mode=transfer")["params"] == {"mode": "transfer"}
