"""Finding 1 of the December 2026 security review against the real server: an account holder's
device cookies cannot take the service's capacity (ASVS 5.0 V2.4.1, V6.3.1).

The review's attack, in small: the attacker signs in to its own account ten times from ten
addresses (ten device cookies), then sends correct-password logins with all of them in parallel,
first from one address, then from a new address each time, against ``authsvc serve`` (gunicorn,
two workers, counters in Redis as in production). Before the fix every one of them got in (known
devices were exempt from every per-client limit). Now the known-device per-client limit cuts the
one-address flood and each device's own limit the many-address one; the limits are the default
policy's (tests/security/test_throttle.py writes them out). Another user's known device still signs
in and its session still verifies. Counts and statuses only: no timings.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from tests.backends import redis_prefix, require_redis
from tests.conftest import PASSWORD, TEST_POLICY
from tests.integration.conftest import (
    authsvc_command,
    form_login_response,
    require_module,
    served_env,
    serving,
    tail,
)
from tests.security.test_throttle import KNOWN_PER_CLIENT, PER_DEVICE
from tests.security.test_throttle import fresh_ip as new_address

pytestmark = pytest.mark.integration

DEVICE = "__Host-authsvc_device"
SESSION = "__Host-authsvc_session"


def cookie(response, name: str) -> str:
    for header in response.raw.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            return header.split(";", 1)[0]
    raise AssertionError(f"no {name} cookie in the response ({response.status_code})")


def flood(requests, base: str, devices: list[str], rounds: int, address) -> list[list[int]]:
    """Each device cookie in its own thread, ``rounds`` correct-password logins one after the
    other (``address()`` for each); the statuses per device."""
    statuses: list[list[int]] = [[] for _ in devices]

    def run(i: int) -> None:
        for _ in range(rounds):
            statuses[i].append(form_login_response(requests, base, "alice", PASSWORD, address(), devices[i]).status_code)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(devices))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return statuses


@pytest.mark.asvs("V2.4.1", "V6.3.1")
def test_an_account_holders_device_cookies_flooding_correct_passwords_are_bounded(tmp_path):
    require_module("requests")
    import requests

    # The device-cookie limits on their own: throttle.successes_per_account (3 in 10 s, 10 a minute,
    # tests/security/test_throttle.py) would refuse most of the ten sign-ins that mint the cookies
    # and this whole flood, so it is raised here.
    policy = tmp_path / "policy.toml"
    policy.write_text(Path(TEST_POLICY).read_text() + '\n[throttle]\nsuccesses_per_account = ["1000 per minute"]\n')
    with redis_prefix("devflood") as prefix:
        env = served_env(tmp_path, AUTHSVC_RATELIMIT_STORAGE_URI=require_redis(), AUTHSVC_RATELIMIT_KEY_PREFIX=prefix,
                         AUTHSVC_POLICY=str(policy))
        with serving(tmp_path, env, workers=2) as server:
            added = subprocess.run([*authsvc_command(), "user", "add", "bob", "--password-stdin"], env=env,
                                   input=PASSWORD + "\n", capture_output=True, text=True, timeout=120, check=False)
            assert added.returncode == 0, added.stderr
            base = server.base
            devices = []
            for _ in range(10):  # the attacker's own account, ten browsers
                minted = form_login_response(requests, base, "alice", PASSWORD, new_address())
                assert minted.status_code == 303, tail(server.log)
                devices.append(cookie(minted, DEVICE))
            bob_address = new_address()
            bob = cookie(form_login_response(requests, base, "bob", PASSWORD, bob_address), DEVICE)

            one = flood(requests, base, devices, 5, lambda: "203.0.113.50")
            flat = [s for per in one for s in per]
            assert set(flat) <= {303, 429, 503}, (flat, tail(server.log))
            assert 1 <= flat.count(303) <= KNOWN_PER_CLIENT, flat  # before the fix: all 50

            many = flood(requests, base, devices, 8, new_address)
            flat = [s for per in many for s in per]
            assert set(flat) <= {303, 429, 503}, (flat, tail(server.log))
            for before, after in zip(one, many):  # each device, across both floods
                assert (before + after).count(303) <= PER_DEVICE, (before, after)  # before the fix: 13

            # Another user's known device signs in, and its session verifies.
            other = form_login_response(requests, base, "bob", PASSWORD, bob_address, bob)
            assert other.status_code == 303, tail(server.log)
            session = cookie(other, SESSION)
            verify = requests.get(f"{base}/auth/verify", timeout=10,
                                  headers={"Cookie": session, "X-Forwarded-For": bob_address,
                                           "X-Forwarded-Proto": "https", "User-Agent": requests.utils.default_user_agent()})
            assert verify.status_code == 200


@pytest.mark.asvs("V2.4.1", "V6.3.1")
def test_an_account_holders_correct_password_flood_from_new_addresses_is_bounded_per_account(tmp_path):
    """No device cookies at all: correct-password logins from a new address each time (the
    review's attack without the cookies), against two workers sharing Redis. A success resets the
    failure counters and no per-client limit sees two requests from one address: the account's own
    success count (throttle.successes_per_account, 3 in 10 s, 10 a minute) is what bounds it."""
    require_module("requests")
    import requests

    from tests.security.test_throttle import SUCCESSES_PER_MINUTE

    with redis_prefix("okflood") as prefix:
        env = served_env(tmp_path, AUTHSVC_RATELIMIT_STORAGE_URI=require_redis(), AUTHSVC_RATELIMIT_KEY_PREFIX=prefix)
        with serving(tmp_path, env, workers=2) as server:
            added = subprocess.run([*authsvc_command(), "user", "add", "bob", "--password-stdin"], env=env,
                                   input=PASSWORD + "\n", capture_output=True, text=True, timeout=120, check=False)
            assert added.returncode == 0, added.stderr  # (serving() made alice)
            statuses: list[int] = []

            def run() -> None:
                for _ in range(6):
                    statuses.append(form_login_response(requests, server.base, "alice", PASSWORD,
                                                        new_address()).status_code)
            threads = [threading.Thread(target=run) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            assert len(statuses) == 24 and set(statuses) <= {303, 429, 503}, (statuses, tail(server.log))
            assert 1 <= statuses.count(303) <= SUCCESSES_PER_MINUTE, statuses  # before: all 24
            other = form_login_response(requests, server.base, "bob", PASSWORD, new_address())
            assert other.status_code == 303, tail(server.log)
