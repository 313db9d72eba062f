"""One fresh botocore IMDS credential provider, asked for credentials once.

Usage: client.py [ENDPOINT]   (or IMDS_ENDPOINT), e.g. http://127.0.0.1:1338

Prints one JSON line: {"sdk": "python", "available", "wait_seconds", "error", "detail",
"access_key_id_prefix", "hung"}. The secret key and the token never leave this process: only the
first four characters of the access key id are printed.

The provider is the one a botocore Session builds for its default chain
(botocore.credentials.create_credential_resolver -> InstanceMetadataProvider with an
InstanceMetadataFetcher): the session's defaults (metadata_service_timeout 1 s,
metadata_service_num_attempts 1, advisory refresh window 15 min), with only the endpoint set, through
AWS_EC2_METADATA_SERVICE_ENDPOINT as an application would. Only the instance-metadata provider of
the chain is asked, so nothing earlier in the chain can answer instead.

A hard deadline (IMDS_CLIENT_DEADLINE seconds, default 30) turns a provider that never returns
into "hung": true (SIGALRM, then the line is printed from the main thread).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from urllib.parse import urlsplit


def refuse_non_loopback(endpoint: str) -> None:
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.scheme != "http" or not (host.startswith("127.") or host in ("::1", "localhost")):
        sys.stderr.write(f"python client: refusing non-loopback IMDS endpoint {endpoint!r}\n")
        sys.exit(2)


class Deadline(BaseException):
    """Raised by SIGALRM wherever botocore is; a BaseException, so that no `except Exception` on
    the way (botocore's and urllib3's own) can take it for an SDK error."""


def main() -> None:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("IMDS_ENDPOINT", "")
    refuse_non_loopback(endpoint)
    deadline = float(os.environ.get("IMDS_CLIENT_DEADLINE", "30"))
    # The application's way of pointing botocore at an IMDS, and nothing else that could answer.
    os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = endpoint
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(var, None)

    import botocore
    import botocore.session
    from botocore.credentials import create_credential_resolver

    def on_alarm(signum, frame):
        raise Deadline()

    signal.signal(signal.SIGALRM, on_alarm)
    start = time.monotonic()
    line = {"sdk": "python", "sdk_version": botocore.__version__}
    try:
        signal.setitimer(signal.ITIMER_REAL, deadline)
        session = botocore.session.Session()
        provider = create_credential_resolver(session).get_provider("iam-role")
        creds = provider.load()
        signal.setitimer(signal.ITIMER_REAL, 0)
        wait = time.monotonic() - start
        if creds is None:
            line.update(available=False, error="NoCredentials", detail="InstanceMetadataProvider.load() returned None")
        else:
            frozen = creds.get_frozen_credentials()
            line.update(
                available=True,
                error=None,
                access_key_id_prefix=frozen.access_key[:4],
                expiry_in_seconds=creds._seconds_remaining(),
            )
    except Deadline:
        wait = time.monotonic() - start
        line.update(available=False, hung=True, error="deadline")
    except Exception as e:  # noqa: BLE001 - every failure is a result here
        signal.setitimer(signal.ITIMER_REAL, 0)
        wait = time.monotonic() - start
        line.update(available=False, error=type(e).__name__, detail=str(e)[:300])
    line.setdefault("access_key_id_prefix", None)
    line.setdefault("hung", False)
    line["wait_seconds"] = round(wait, 4)
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
