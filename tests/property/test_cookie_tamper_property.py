"""Property: a session or remember cookie the server did not mint, exactly, grants nothing.

After real logins of alice and bob (each with remember-me), hypothesis mangles alice's cookies:
bit flips anywhere in the cookie text and inside each decoded segment, truncation at any point,
junk glued on either end, concatenation with other cookies, parts swapped between users, cookies
moved to another cookie's slot, and payloads re-signed with other keys, digests and salts. Every
one must make ``/auth/verify`` answer 401 (a remember cookie: ``/login`` must not log in), while
the untouched cookie keeps working, so each 401 is the mutation's doing (ASVS 9.1.1, 9.2.2, 7.2.1).

The app is built once per module; every request uses a cookie-less client with an explicit
``Cookie`` header, so no example can leak state into the next.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import dataclass, field

import pytest
from flask import Flask
from flask.json.tag import TaggedJSONSerializer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from tests.conftest import (
    STRONG_KEY,
    Clock,
    add_user,
    build_app,
    cookie_value,
    login,
    new_client,
)

SESSION = "__Host-authsvc_session"
REMEMBER = "__Host-authsvc_remember"
DEVICE = "__Host-authsvc_device"
SESSION_SALT = "authsvc.session"  # authsvc.web.session_cookie.SessionInterface.salt

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# RFC 6265 cookie-octets: what a browser could put in a cookie value without quoting.
COOKIE_OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')


@dataclass
class World:
    app: Flask = field(repr=False)
    cookies: dict[str, dict[str, str]] = field(repr=False)  # user -> cookie name -> value
    user_ids: dict[str, int] = field(repr=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    app = build_app(tmp_path_factory.mktemp("cookie-tamper"), Clock())
    cookies, ids = {}, {}
    for name in ("alice", "bob"):
        ids[name] = add_user(app, name).id
        client = new_client(app)
        assert login(client, name, remember=True).status_code == 303
        cookies[name] = {c: cookie_value(client, c) for c in (SESSION, REMEMBER, DEVICE)}
        assert all(cookies[name].values())
    return World(app, cookies, ids)


# --- probes ----------------------------------------------------------------------------------------

def send(world: World, path: str, cookie: str, value: str):
    client = new_client(world.app, use_cookies=False)
    # Straight into the WSGI environ: any byte 0-255 reaches the server as a browser could send it.
    return client.get(path, environ_overrides={"HTTP_COOKIE": f"{cookie}={value}"})


def verify_status(world: World, value: str, cookie: str = SESSION) -> int:
    return send(world, "/auth/verify", cookie, value).status_code


def assert_alice_still_in(world: World) -> None:
    response = send(world, "/auth/verify", SESSION, world.cookies["alice"][SESSION])
    assert response.status_code == 200
    assert response.headers["X-Auth-User"] == "alice"


def remember_logs_in(world: World, value: str) -> bool:
    """Does presenting ``value`` as the remember cookie on /login start a session?"""
    response = send(world, "/login", REMEMBER, value)
    assert response.status_code in (200, 303)
    started = [h for h in response.headers.getlist("Set-Cookie")
               if h.startswith(SESSION + "=") and "_user_id" in json.dumps(_payload_or_empty(h))]
    return response.status_code == 303 or bool(started)


def _payload_or_empty(set_cookie: str) -> dict:
    value = set_cookie.split(";", 1)[0].split("=", 1)[1]
    try:
        return session_payload(value)
    except (ValueError, zlib.error):  # an emptied cookie or one we cannot read holds no session
        return {}


def session_payload(value: str) -> dict:
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return json.loads(zlib.decompress(raw) if value.startswith(".") else raw)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def flip(text: str, index: int, bit: int) -> str:
    return text[:index] + chr(ord(text[index]) ^ (1 << bit)) + text[index + 1:]


def resign(payload: dict, key: str, *, salt: str = SESSION_SALT, digest=hashlib.sha256) -> str:
    """A session cookie exactly as Flask would make it, under the given key, salt and digest."""
    serializer = URLSafeTimedSerializer(key, salt=salt, serializer=TaggedJSONSerializer(),
                                        signer_kwargs={"key_derivation": "hmac", "digest_method": digest})
    return serializer.dumps(payload)


# --- controls: the probes can tell a good cookie from a bad one -------------------------------------

def test_untouched_cookies_authenticate_their_own_user(world):
    for user in ("alice", "bob"):
        response = send(world, "/auth/verify", SESSION, world.cookies[user][SESSION])
        assert response.status_code == 200
        assert response.headers["X-Auth-User"] == user


def test_a_genuine_remember_cookie_does_log_in(world):
    # A fresh one (not alice's fixture cookie, which must stay unused for the properties below).
    svc = world.app.extensions["authsvc"]
    value, _ = svc.remember.issue(world.user_ids["alice"], "127.0.0.1", "test")
    assert remember_logs_in(world, value)


def test_resigning_under_the_real_key_is_accepted(world):
    """The forging recipe is faithful: with the right key it yields a working cookie, so the
    refusals below come from the key, digest or salt, not from a broken recipe."""
    payload = session_payload(world.cookies["alice"][SESSION])
    assert verify_status(world, resign(payload, STRONG_KEY)) == 200


# --- mutations of the session cookie ----------------------------------------------------------------

@pytest.mark.asvs("V9.1.1", "V7.2.1")
@PROPERTY
@given(data=st.data())
def test_any_bit_flip_in_the_session_cookie_is_refused(world, data):
    value = world.cookies["alice"][SESSION]
    index = data.draw(st.integers(0, len(value) - 1), label="index")
    bit = data.draw(st.integers(0, 7), label="bit")
    assert verify_status(world, flip(value, index, bit)) == 401
    assert_alice_still_in(world)


@pytest.mark.asvs("V9.1.1")
def test_every_bit_flip_in_the_signature_text_is_refused(world):
    """Exhaustive over the signature: its last character carries bits that base64 ignores, the
    spot where a lenient decoder would accept a changed cookie."""
    value = world.cookies["alice"][SESSION]
    start = value.rindex(".") + 1
    accepted = [(i, bit) for i in range(start, len(value)) for bit in range(8)
                if verify_status(world, flip(value, i, bit)) != 401]
    assert accepted == []
    assert_alice_still_in(world)


@pytest.mark.asvs("V9.1.1")
@PROPERTY
@given(data=st.data())
def test_any_bit_flip_inside_a_decoded_segment_is_refused(world, data):
    value = world.cookies["alice"][SESSION]
    compressed = value.startswith(".")
    segments = value.lstrip(".").split(".")  # payload, timestamp, signature
    which = data.draw(st.integers(0, len(segments) - 1), label="segment")
    raw = bytearray(unb64(segments[which]))
    index = data.draw(st.integers(0, len(raw) - 1), label="byte")
    raw[index] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    segments[which] = b64(bytes(raw))
    forged = ("." if compressed else "") + ".".join(segments)
    assert verify_status(world, forged) == 401
    assert_alice_still_in(world)


@pytest.mark.asvs("V9.1.1")
@PROPERTY
@given(data=st.data())
def test_session_cookie_truncated_anywhere_is_refused(world, data):
    value = world.cookies["alice"][SESSION]
    cut = data.draw(st.integers(0, len(value) - 1), label="cut")
    assert verify_status(world, value[:cut]) == 401


@pytest.mark.asvs("V9.1.1")
@PROPERTY
@given(junk=st.text(alphabet=COOKIE_OCTETS, min_size=1, max_size=12), at_end=st.booleans())
def test_junk_glued_to_the_session_cookie_is_refused(world, junk, at_end):
    value = world.cookies["alice"][SESSION]
    assert verify_status(world, value + junk if at_end else junk + value) == 401


@pytest.mark.asvs("V9.1.1")
@FEW
@given(other=st.sampled_from([("alice", SESSION), ("bob", SESSION), ("alice", REMEMBER), ("bob", REMEMBER),
                              ("alice", DEVICE), ("bob", DEVICE)]),
       joiner=st.sampled_from(["", ".", "-", "_", "=", "=="]), first=st.booleans())
def test_session_cookie_concatenated_with_another_cookie_is_refused(world, other, joiner, first):
    mine, theirs = world.cookies["alice"][SESSION], world.cookies[other[0]][other[1]]
    glued = mine + joiner + theirs if first else theirs + joiner + mine
    assert verify_status(world, glued) == 401


def _split(value: str) -> tuple[str, list[str]]:
    return ("." if value.startswith(".") else ""), value.lstrip(".").split(".")


@pytest.mark.asvs("V9.1.1", "V7.2.1")
@pytest.mark.parametrize("payload_from, ts_from, sig_from", [
    ("bob", "bob", "alice"), ("bob", "alice", "alice"), ("alice", "alice", "bob"), ("alice", "bob", "bob"),
])
def test_parts_swapped_between_two_users_cookies_are_refused(world, payload_from, ts_from, sig_from):
    """bob's payload under alice's signature, alice's payload under bob's, with either timestamp."""
    prefix, (payload, _, _) = _split(world.cookies[payload_from][SESSION])
    forged = prefix + ".".join([payload, _split(world.cookies[ts_from][SESSION])[1][1],
                                _split(world.cookies[sig_from][SESSION])[1][2]])
    assert forged not in (world.cookies["alice"][SESSION], world.cookies["bob"][SESSION])
    assert verify_status(world, forged) == 401
    assert_alice_still_in(world)


# --- a cookie in another cookie's slot ----------------------------------------------------------------

@pytest.mark.asvs("V9.2.2")
@pytest.mark.parametrize("user", ["alice", "bob"])
@pytest.mark.parametrize("source", [REMEMBER, DEVICE])
def test_other_cookies_in_the_session_slot_are_refused(world, user, source):
    assert verify_status(world, world.cookies[user][source]) == 401


@pytest.mark.asvs("V9.2.2")
@pytest.mark.parametrize("user", ["alice", "bob"])
@pytest.mark.parametrize("source", [SESSION, DEVICE])
def test_other_cookies_in_the_remember_slot_do_not_log_in(world, user, source):
    assert not remember_logs_in(world, world.cookies[user][source])


# --- mutations of the remember cookie ---------------------------------------------------------------

@pytest.mark.asvs("V9.1.1")
@FEW
@given(data=st.data())
def test_bit_flipped_or_truncated_remember_cookie_does_not_log_in(world, data):
    value = world.cookies["alice"][REMEMBER]
    if data.draw(st.booleans(), label="truncate"):
        mutated = value[:data.draw(st.integers(0, len(value) - 1), label="cut")]
    else:
        mutated = flip(value, data.draw(st.integers(0, len(value) - 1), label="index"),
                       data.draw(st.integers(0, 7), label="bit"))
    assert not remember_logs_in(world, mutated)


# --- forged signatures --------------------------------------------------------------------------------

@pytest.mark.asvs("V9.1.1", "V9.1.3")
@FEW
@given(key=st.text(min_size=1, max_size=64), as_bob=st.booleans())
def test_payload_resigned_with_another_key_is_refused(world, key, as_bob):
    assume(key != STRONG_KEY)
    payload = session_payload(world.cookies["alice"][SESSION])
    if as_bob:  # the attack worth forging: someone else's session token under alice's binding
        payload["_user_id"] = session_payload(world.cookies["bob"][SESSION])["_user_id"]
    assert verify_status(world, resign(payload, key)) == 401
    assert_alice_still_in(world)


@pytest.mark.asvs("V9.1.2", "V9.2.2")
@pytest.mark.parametrize("salt, digest", [
    (SESSION_SALT, hashlib.sha1),          # Flask's default digest, ASVS appendix C "legacy"
    (SESSION_SALT, hashlib.md5),
    ("cookie-session", hashlib.sha256),    # Flask's default salt
    ("authsvc.remember", hashlib.sha256),  # another purpose's salt
    ("authsvc.device", hashlib.sha256),
])
def test_payload_signed_with_the_real_key_but_wrong_digest_or_salt_is_refused(world, salt, digest):
    payload = session_payload(world.cookies["alice"][SESSION])
    assert verify_status(world, resign(payload, STRONG_KEY, salt=salt, digest=digest)) == 401
    assert_alice_still_in(world)
