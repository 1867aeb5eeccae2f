"""Control: the known-device registry's decisions as pure functions, and the store under hostile use
(ASVS 5.0 V6.3.1, V2.4.1; security review of December 2026, finding 1).

- :func:`authsvc.core.devices.evictions`: which devices an account forgets to stay within the cap
  (least recently used first, ties by age), for every shape of input;
- :func:`authsvc.core.devices.device_digest`: what the registry stores instead of the id;
- :func:`authsvc.web.limiter.breached`: which limit a 429 names in the audit log;
- :class:`authsvc.core.devices.DeviceRegistry` against a real database: the cap under parallel
  registrations, a known device keeping its id, forgetting, lifetime, cap 0;
- the policy: renamed keys, unparseable rates and `authsvc check`'s judgement of the new keys.
"""

from __future__ import annotations

import threading
import types

import pytest

from authsvc.core.devices import device_digest, evictions, new_device_id
from authsvc.web.limiter import breached
from authsvc.core.policy import PolicyError, load_policy
from tests.conftest import add_user
from tests.security.test_throttle import policy_file

# --- evictions: least recently used first ------------------------------------------------------------


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("devices, cap, gone", [
    ([], 10, []),                                              # nothing registered
    ([(1, 5.0)], 10, []),                                      # under the cap
    ([(i, float(i)) for i in range(1, 11)], 10, []),           # exactly at it
    ([(i, float(i)) for i in range(1, 12)], 10, [1]),          # one over: the oldest use goes
    ([(i, float(i)) for i in range(1, 13)], 10, [1, 2]),
    ([(1, 100.0), (2, 1.0), (3, 50.0)], 2, [2]),               # by last use, not by row id
    ([(3, 50.0), (1, 100.0), (2, 1.0)], 2, [2]),               # input order does not matter
    ([(1, 7.0), (2, 7.0), (3, 7.0)], 2, [1]),                  # a tie: the row registered first goes
    ([(1, 7.0), (2, 7.0), (3, 7.0)], 0, [1, 2, 3]),            # cap 0: every one
    ([(1, 7.0), (2, 8.0)], -5, [1, 2]),                        # a negative cap is no cap above 0
    ([(1, float("inf")), (2, 0.0)], 1, [2]),                   # a clock gone mad still picks one
    ([(1, -1e300), (2, 1e300)], 1, [1]),
])
def test_an_account_over_its_device_cap_forgets_its_least_recently_used_devices(devices, cap, gone):
    assert evictions(devices, cap) == gone


def test_evictions_of_a_huge_registry_keep_exactly_the_cap_most_recent():
    devices = [(i, float(i % 997)) for i in range(100_000)]
    gone = set(evictions(devices, 10))
    kept = [d for d in devices if d[0] not in gone]
    assert len(kept) == 10 and min(t for _, t in kept) >= max(t for i, t in devices if i in gone)


# --- what the registry stores ----------------------------------------------------------------------------


def test_device_ids_are_stored_as_distinct_digests_whatever_their_characters():
    # Case, width, trailing space, NUL, lone surrogates, composed and decomposed accents: each is its
    # own id (never normalised into another's), and none is stored as written.
    ids = ["A" * 22, "a" * 22, "Ａ" * 22, "A" * 21 + " ", "A" * 21 + "\x00", "\ud800" * 16, "é" * 16,
           "e\u0301" * 8, "A" * 10_000]
    digests = [device_digest(i) for i in ids]
    assert len(set(digests)) == len(ids) and all(len(d) == 32 for d in digests)
    assert all(i.encode("utf-8", "surrogatepass")[:16] not in d for i, d in zip(ids, digests))


def test_new_device_ids_are_random_and_of_the_length_cookies_accept():
    ids = {new_device_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(16 <= len(i) <= 32 for i in ids)


# --- which limit a 429 names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scope, reason", [(None, "per_client"), ("known_device", "per_client_known_device"),
                                           ("device", "per_device"), ("something-else", "per_client")])
def test_a_429_names_the_per_client_limit_that_fired(scope, reason):
    assert breached(types.SimpleNamespace(limit=types.SimpleNamespace(scope=scope))) == reason
    assert breached(object()) == "per_client"


# --- the registry against the database ----------------------------------------------------------------------


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_parallel_registrations_never_leave_more_than_the_cap(app, svc):
    user = add_user(app)
    start = threading.Barrier(20)

    def register() -> None:
        start.wait()
        svc.known_devices.remember(user.id, None)
    threads = [threading.Thread(target=register) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert svc.known_devices.count(user.id) == svc.policy.throttle.max_devices_per_account


@pytest.mark.asvs("V6.3.1")
def test_a_registered_device_keeps_its_id_and_an_unregistered_one_gets_a_new_one(app, svc):
    user = add_user(app)
    first = svc.known_devices.remember(user.id, None)
    assert svc.known_devices.remember(user.id, first) == first
    stranger = new_device_id()  # validly signed perhaps, but never registered (or forgotten)
    other = svc.known_devices.remember(user.id, stranger)
    assert other not in (first, stranger) and not svc.known_devices.is_known("alice", stranger)
    assert svc.known_devices.count(user.id) == 2
    assert svc.known_devices.forget_all(user.id) == 2
    assert not svc.known_devices.is_known("alice", first)


@pytest.mark.asvs("V6.3.1")
def test_a_device_unused_for_the_cookie_lifetime_is_no_longer_known(app, svc, clock):
    user = add_user(app)
    device = svc.known_devices.remember(user.id, None)
    clock.advance(svc.policy.throttle.device_cookie_lifetime_days * 86400 + 1)
    assert not svc.known_devices.is_known("alice", device)
    svc.known_devices.remember(user.id, None)  # registering another purges it
    assert svc.known_devices.count(user.id) == 1


@pytest.mark.asvs("V6.3.1")
def test_an_unknown_or_deleted_account_has_no_known_devices(app, svc):
    user = add_user(app)
    device = svc.known_devices.remember(user.id, None)
    for name in ("nobody", "ALICE ", "alice\x00", ""):
        assert not svc.known_devices.is_known(name, device)
    assert svc.known_devices.is_known("alice", device)


def test_with_a_cap_of_zero_no_device_is_ever_known_and_no_cookie_is_issued(tmp_path, clock):
    from tests.conftest import build_app, login, new_client

    app = build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(tmp_path, max_devices_per_account=0))
    add_user(app)
    client = new_client(app)
    resp = login(client)
    assert resp.status_code == 303
    assert not any("authsvc_device" in h for h in resp.headers.getlist("Set-Cookie"))


# --- the policy -----------------------------------------------------------------------------------------------


def test_the_renamed_global_limit_key_says_what_to_write_instead(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('[throttle]\nglobal_failed_logins = "300 per minute"\n')
    with pytest.raises(PolicyError, match="global_failed_logins was renamed: use throttle.global_logins"):
        load_policy(path)


@pytest.mark.parametrize("key, value", [("per_device", ["ten per minute"]), ("per_client_known_device", [""]),
                                        ("per_client", ["10 per fortnight"]), ("global_logins", "lots"),
                                        ("successes_per_account", ["10 a minute"])])
def test_a_rate_that_does_not_parse_is_refused_at_load_naming_the_key(tmp_path, key, value):
    with pytest.raises(PolicyError, match=f"throttle.{key}"):
        load_policy(policy_file(tmp_path, **{key: value}))
