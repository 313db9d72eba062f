"""The simulator's container endpoint and STS stand-in, proven with the real botocore, and the
exporter's classification of each scenario held against what botocore experiences.

botocore's container provider (`ContainerProvider`, `ContainerMetadataFetcher`: 2 s timeout, 3
attempts, 1 s apart, the token file read at every fetch) is pointed at the simulator's
`/v1/credentials` (the EKS Pod Identity agent's path) with AWS_CONTAINER_CREDENTIALS_FULL_URI and
AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE. For every container scenario, botocore gets credentials
exactly where the exporter's container probe succeeds (tests/container.rs, CLASSIFICATION), and
where it fails, botocore fails after the same number of requests. Its web identity provider is
pointed at STS with AWS_ENDPOINT_URL_STS: moto's server (a real peer; IMDS_EXPORTER_MOTO_SERVER)
for the exchange, and the simulator's stand-in for an expired token, which moto does not check.
No request leaves 127.0.0.1.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time

import botocore.session
import pytest
from botocore.credentials import ContainerProvider

from test_fidelity import aws_env, sim  # noqa: F401  (fixtures)

TOKEN = "simulated-pod-identity-token"  # the simulator's --container-token default

# The exporter's verdict for each container scenario (tests/container.rs, CLASSIFICATION):
# None = credentials; else the reason. botocore must agree: credentials exactly where None.
CLASSIFICATION = {
    "healthy": None,
    "outage": "timeout",
    "refused": "connect",
    "throttle": "throttled",
    "throttle-partial?ratio=1": "throttled",
    "slow?delay=2500ms": "timeout",
    "slow?delay=20ms": None,
    "jitter?p50=5ms&p99=20ms": None,
    "server-error": "server_error",
    "no-role": "not_found",
    "token-rejected": "unauthorized",
    "expired": "expired",
    "expiring": None,
    "stale": None,
    "rotate-late": None,
    "malformed": "invalid_response",
    "truncated": "invalid_response",
    "truncated?mode=transfer": "connect",
    "huge": None,
}


def container_switch(sim, scenario):
    status, doc = sim.control("POST", f"/_sim/container/scenario/{scenario}")
    assert status == 200, doc


def container_requests(sim) -> int:
    return sum(sim.state()["requests"].get("container", {}).values())


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "eks-pod-identity-token"
    path.write_text(TOKEN)
    return path


@pytest.fixture(autouse=True)
def container_healthy(sim):
    container_switch(sim, "healthy")
    status, _ = sim.control("POST", "/_sim/sts/code/auto")
    assert status == 200
    yield
    container_switch(sim, "healthy")


def provider(sim, token_path):
    env = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{sim.url}/v1/credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_path),
    }
    return ContainerProvider(environ=env)


@pytest.mark.parametrize("scenario", list(CLASSIFICATION))
def test_botocore_and_the_exporter_agree_on_every_container_scenario(sim, token_file, scenario):
    container_switch(sim, scenario)
    before = container_requests(sim)
    try:
        creds = provider(sim, token_file).load()
        got = creds.get_frozen_credentials() if creds else None
    except Exception as e:  # noqa: BLE001 - any failure is "no credentials" for the application
        got = None
        failure = e
    requests = container_requests(sim) - before
    if CLASSIFICATION[scenario] is None:
        assert got is not None, f"{scenario}: botocore got no credentials ({failure!r})"
        want = sim.state()["container"]["credentials"]["access_key_id"]
        assert got.access_key == want
        assert requests >= 1
    else:
        assert got is None, f"{scenario}: botocore got credentials; the exporter says {CLASSIFICATION[scenario]}"
        # botocore's three attempts, as the exporter's. An expired document: botocore takes it, then
        # refreshes at once because it has expired (a second request, the same document) and
        # refuses it ("the refreshed credentials are still expired"); the exporter judges the
        # first document and makes no second request: the verdict is the same.
        assert requests == (2 if scenario == "expired" else 3), f"{scenario}: {requests} requests"


def test_the_token_file_is_read_at_every_fetch(sim, tmp_path):
    path = tmp_path / "token"
    path.write_text("an-old-token")
    with pytest.raises(Exception):
        provider(sim, path).load()
    path.write_text(TOKEN)
    assert provider(sim, path).load().get_frozen_credentials().access_key


def test_a_token_with_a_line_break_or_a_missing_file_makes_no_request(sim, tmp_path):
    newline = tmp_path / "newline"
    newline.write_text(TOKEN + "\n")
    before = container_requests(sim)
    with pytest.raises(ValueError):
        provider(sim, newline).load()
    with pytest.raises(OSError):
        provider(sim, tmp_path / "missing").load()
    assert container_requests(sim) == before


# --- web identity ----------------------------------------------------------------------------


def jwt(exp: int) -> str:
    b = lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")  # noqa: E731
    payload = json.dumps({"aud": ["sts.amazonaws.com"], "exp": exp, "sub": "system:serviceaccount:ns:sa"})
    return f"{b(json.dumps({'alg': 'RS256'}))}.{b(payload)}.c2lnbmF0dXJl"


@pytest.fixture(scope="module")
def moto():
    binary = os.environ.get("IMDS_EXPORTER_MOTO_SERVER")
    if not binary:
        pytest.skip("no moto_server: set IMDS_EXPORTER_MOTO_SERVER (scripts/moto-venv)")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "moto_server did not listen"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def web_identity_credentials(monkeypatch, tmp_path, endpoint, exp):
    token = tmp_path / "token"
    token.write_text(jwt(exp))
    monkeypatch.delenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    creds = botocore.session.Session().get_credentials()
    assert creds.method == "assume-role-with-web-identity"
    return creds.get_frozen_credentials()


def test_botocore_exchanges_the_web_identity_token_at_moto(monkeypatch, tmp_path, moto):
    creds = web_identity_credentials(monkeypatch, tmp_path, moto, int(time.time()) + 3600)
    assert creds.access_key and creds.token


def test_an_expired_web_identity_token_is_refused_as_the_exporter_says(monkeypatch, tmp_path, sim):
    # The exporter: reason "expired" (the exp claim has passed). STS: ExpiredTokenException,
    # here from the simulator's stand-in (moto does not check exp).
    with pytest.raises(Exception, match="ExpiredTokenException"):
        web_identity_credentials(monkeypatch, tmp_path, f"{sim.url}/_sts", int(time.time()) - 60)
    creds = web_identity_credentials(monkeypatch, tmp_path, f"{sim.url}/_sts", int(time.time()) + 3600)
    assert creds.access_key == "ASIASIMWEBIDENTITY01"
