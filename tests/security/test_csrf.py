"""Control: CSRF tokens (authsvc.web.csrf), ASVS 5.0 V3.5.1, V11.3.x (HMAC-SHA-256), V13.3.4 (rotation).

Attacks tried here, on the pure decision and through the real forms:

- a token signed as Flask-WTF signed it (HMAC-SHA1), or for another purpose (another salt), or with
  a key that is not (or no longer) this service's, or tampered, truncated, padded, re-encoded;
- a genuine token of another session (an attacker's own, from a page they loaded), or one left
  over from before sign-in;
- a token older than the time limit, or dated in the future;
- no token, an empty one, two of them;
- learning the session value byte by byte from response times (the comparison is constant-time).

And what must keep working: a token signed with a fallback key while the key is rotated.
"""

from __future__ import annotations

import base64
import hmac
import json
import time

import pytest
from itsdangerous import URLSafeTimedSerializer

from authsvc.web import csrf
from authsvc.web.csrf import MESSAGE, SALT, TIME_LIMIT_SECONDS, verdict
from authsvc.core.signing import timed_serializer
from tests.conftest import PASSWORD, STRONG_KEY, add_user, build_app, cookie_value, login, new_client
from tests.conftest import csrf as form_token

NEW_KEY = "rotated-key-9Qm2Xv7Lp4Wz8Rt1Ny6Kd3Hs5Bf0Gj-authsvc"
OTHER_KEY = "an-entirely-different-secret-key-0123456789abcdef"
VALUE = "5f0c" * 16
SIGNER = timed_serializer(STRONG_KEY, (), SALT)


def signed(serializer=SIGNER, value=VALUE) -> tuple[str, float]:
    """A token and the time it was signed (itsdangerous signs in whole seconds)."""
    token = serializer.dumps(value)
    _, at = serializer.loads(token, return_timestamp=True)
    return token, at.timestamp()


def decide(token, *, value=VALUE, serializer=SIGNER, age: float = 0) -> str:
    _, at = signed(serializer)
    return verdict([token] if isinstance(token, str) else token, value, serializer, at + age, TIME_LIMIT_SECONDS)


# --- the decision ----------------------------------------------------------------------------------

@pytest.mark.asvs("V3.5.1")
def test_this_sessions_token_is_accepted():
    token, at = signed()
    assert verdict([token], VALUE, SIGNER, at, TIME_LIMIT_SECONDS) == "ok"


@pytest.mark.asvs("V3.5.1", "V11.3.2")
@pytest.mark.parametrize("forge", [
    pytest.param(lambda: URLSafeTimedSerializer(STRONG_KEY, salt=SALT).dumps(VALUE), id="hmac-sha1-same-key-and-salt"),
    pytest.param(lambda: URLSafeTimedSerializer(STRONG_KEY, salt="wtf-csrf-token").dumps(VALUE), id="flask-wtf-token"),
    pytest.param(lambda: timed_serializer(STRONG_KEY, (), "authsvc.device").dumps(VALUE), id="signed-for-another-purpose"),
    pytest.param(lambda: timed_serializer(OTHER_KEY, (), SALT).dumps(VALUE), id="another-key"),
    pytest.param(lambda: URLSafeTimedSerializer(STRONG_KEY, salt=SALT, signer_kwargs={"digest_method": __import__(
        "hashlib").sha512}).dumps(VALUE), id="hmac-sha512"),
])
def test_a_token_not_signed_by_this_service_for_csrf_with_sha256_is_invalid(forge):
    assert decide(forge()) == "invalid"


def _tamper_payload(token: str) -> str:
    return ("A" if token[1] != "A" else "B").join((token[:1], token[2:]))


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("mangle", [
    pytest.param(_tamper_payload, id="payload-changed"),
    pytest.param(lambda t: t[:-1], id="truncated-signature"),
    pytest.param(lambda t: t[: t.rindex(".")], id="signature-dropped"),
    pytest.param(lambda t: t[: t.index(".")], id="payload-only"),
    pytest.param(lambda t: t + "==", id="padded-signature"),
    pytest.param(lambda t: t + "\u00e9", id="non-ascii-after-signature"),
    pytest.param(lambda t: t + " ", id="trailing-space"),
    pytest.param(lambda t: " " + t, id="leading-space"),
    pytest.param(lambda t: t[:-1] + chr(ord(t[-1]) ^ 1), id="last-character-nudged"),
    pytest.param(lambda t: t.replace(".", "..", 1), id="doubled-separator"),
    pytest.param(lambda t: "", id="empty"),
    pytest.param(lambda t: ".", id="just-a-dot"),
    pytest.param(lambda t: "x" * 1_000_000, id="a-megabyte"),
    pytest.param(lambda t: "\x00" + t, id="nul"),
])
def test_a_tampered_or_malformed_token_is_invalid(mangle):
    token, _ = signed()
    assert decide(mangle(token)) == "invalid"


@pytest.mark.asvs("V3.5.1")
def test_a_signed_value_that_is_not_a_session_value_is_invalid():
    for payload in (123, None, ["a"], {"csrf": VALUE}):
        assert decide(SIGNER.dumps(payload)) == "invalid"


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("other", ["6f0c" * 16, VALUE[:-1], VALUE + "0", VALUE.upper(), ""])
def test_a_genuine_token_of_another_session_does_not_match(other):
    token, _ = signed(value=other) if other else signed(value="x")
    assert decide(token) == "mismatch"


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("session_value", [None, "", 7, ["x"]])
def test_a_session_without_a_value_accepts_no_token(session_value):
    token, _ = signed()
    assert decide(token, value=session_value) == "no_session_token"


@pytest.mark.asvs("V3.5.1")
def test_no_token_or_two_tokens_are_refused():
    token, _ = signed()
    assert decide([]) == "missing"
    assert decide([token, token]) == "repeated"
    assert decide([token, "x"]) == "repeated"


@pytest.mark.asvs("V3.5.1")
def test_a_token_lives_exactly_the_time_limit_and_not_before_it_was_signed():
    token, _ = signed()
    assert decide(token, age=TIME_LIMIT_SECONDS) == "ok"
    assert decide(token, age=TIME_LIMIT_SECONDS + 1) == "expired"
    assert decide(token, age=10 * 365 * 86400) == "expired"
    assert decide(token, age=-1) == "expired"       # dated in the future: not by this clock


@pytest.mark.asvs("V13.3.4")
def test_a_token_signed_with_a_fallback_key_is_accepted_during_rotation_and_refused_after():
    old_token, _ = signed(timed_serializer(STRONG_KEY, (), SALT))
    rotating = timed_serializer(NEW_KEY, (STRONG_KEY,), SALT)
    rotated = timed_serializer(NEW_KEY, (), SALT)
    assert decide(old_token, serializer=rotating) == "ok"
    assert decide(old_token, serializer=rotated) == "invalid"
    new_token, _ = signed(rotating)   # new tokens are signed with the new key only
    assert decide(new_token, serializer=rotated) == "ok"
    assert decide(new_token, serializer=SIGNER) == "invalid"


@pytest.mark.asvs("V3.5.1")
def test_the_session_value_is_compared_in_constant_time(monkeypatch):
    calls, real = [], hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)
    monkeypatch.setattr(csrf.hmac, "compare_digest", spy)
    token, _ = signed(value=VALUE[:-1] + "d")
    assert decide(token) == "mismatch"
    # (the signature check compares in constant time too: the spy sees both)
    assert ((VALUE[:-1] + "d").encode(), VALUE.encode()) in calls


def test_session_values_are_256_random_bits_and_never_repeat():
    values = {csrf.new_session_value() for _ in range(1000)}
    assert len(values) == 1000 and all(len(base64.urlsafe_b64decode(v + "=")) == 32 for v in values)


@pytest.mark.asvs("V6.3.8")
def test_every_sessions_token_has_the_same_length():
    """A page whose size depends on the session's random value would make responses that must be
    identical (unknown user and wrong password, tests/security/test_throttle.py) differ."""
    assert len({len(SIGNER.dumps(csrf.new_session_value())) for _ in range(5000)}) == 1


# --- through the forms -------------------------------------------------------------------------------

def session_value(app, client) -> str:
    value = cookie_value(client, app.extensions["authsvc"].cookies.session)
    return app.session_interface.get_signing_serializer(app).loads(value)["csrf_token"]


def audit(capsys, event: str) -> list[dict]:
    lines = (json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


def post_login(client, token):
    data = {"username": "alice", "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    return client.post("/login", data=data)


@pytest.mark.asvs("V3.5.1", "V11.3.2")
def test_the_login_form_carries_an_hmac_sha256_token_for_this_session(app):
    client = new_client(app)
    token = form_token(client)
    assert timed_serializer(STRONG_KEY, (), SALT).loads(token) == session_value(app, client)
    with pytest.raises(Exception):
        URLSafeTimedSerializer(STRONG_KEY, salt=SALT).loads(token)   # not HMAC-SHA1
    assert len(token.rsplit(".", 1)[1]) == 43                          # 32 bytes of signature


@pytest.mark.asvs("V3.5.1", "V16.3.3")
@pytest.mark.parametrize("token, reason", [
    (None, "missing"),
    ("", "invalid"),
    ("sha1", "invalid"),
    ("other-session", "mismatch"),
])
def test_a_refused_token_gets_the_same_400_and_an_audit_reason(app, user, capsys, token, reason):
    victim = new_client(app)
    own = form_token(victim)
    if token == "sha1":
        token = URLSafeTimedSerializer(STRONG_KEY, salt="wtf-csrf-token").dumps(session_value(app, victim))
    elif token == "other-session":
        token = form_token(new_client(app))
    capsys.readouterr()
    response = post_login(victim, token)
    assert response.status_code == 400 and MESSAGE in response.get_data(as_text=True)
    assert [line["reason"] for line in audit(capsys, "csrf_failed")] == [reason]
    assert own not in capsys.readouterr().out
    assert post_login(victim, own).status_code == 303   # the control: the real token works


@pytest.mark.asvs("V13.3.4")
def test_a_form_loaded_before_a_key_rotation_still_posts(tmp_path, clock):
    old = build_app(tmp_path, clock)
    add_user(old)
    client = new_client(old)
    token = form_token(client)
    rotating = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=NEW_KEY, AUTHSVC_SECRET_KEY_FALLBACKS=STRONG_KEY)
    moved = new_client(rotating)
    moved.set_cookie(rotating.extensions["authsvc"].cookies.session,
                     cookie_value(client, old.extensions["authsvc"].cookies.session), domain="auth.example.test")
    assert post_login(moved, token).status_code == 303


@pytest.mark.asvs("V13.3.4")
@pytest.mark.parametrize("fallbacks, status", [(STRONG_KEY, 303), (None, 400)], ids=["fallback-kept", "fallback-dropped"])
def test_a_token_signed_with_a_dropped_fallback_key_is_refused(tmp_path, clock, fallbacks, status):
    app = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=NEW_KEY, AUTHSVC_SECRET_KEY_FALLBACKS=fallbacks)
    add_user(app)
    client = new_client(app)
    form_token(client)   # this session, signed with the new key
    old_key_token = timed_serializer(STRONG_KEY, (), SALT).dumps(session_value(app, client))
    assert post_login(client, old_key_token).status_code == status


@pytest.mark.asvs("V3.5.1")
def test_a_token_older_than_the_time_limit_is_refused(app, user, monkeypatch, capsys):
    client = new_client(app)
    start = time.time()
    monkeypatch.setattr(time, "time", lambda: start)
    token = form_token(client)
    monkeypatch.setattr(time, "time", lambda: start + TIME_LIMIT_SECONDS + 2)
    capsys.readouterr()
    assert post_login(client, token).status_code == 400
    assert [line["reason"] for line in audit(capsys, "csrf_failed")] == ["expired"]
    assert post_login(client, form_token(client)).status_code == 303


@pytest.mark.asvs("V3.5.1")
def test_a_token_from_before_sign_in_does_not_post_after_it(app, user):
    client = new_client(app)
    before = form_token(client)
    assert post_login(client, before).status_code == 303
    assert client.post("/logout", data={"csrf_token": before}).status_code == 400
    assert client.post("/logout", data={"csrf_token": form_token(client, "/")}).status_code == 303


def test_a_path_or_method_without_a_route_keeps_its_404_or_405(app):
    client = new_client(app)
    assert client.post("/no-such-page").status_code == 404
    assert client.put("/healthz").status_code == 405
    assert client.get("/login").status_code == 200 and client.head("/login").status_code == 200


@pytest.mark.asvs("V3.5.1")
def test_login_still_works_end_to_end_with_the_page_token(app, user):
    assert login(new_client(app)).status_code == 303


# --- the header the passkey script sends (issue 17) ---------------------------------------------------------

@pytest.mark.asvs("V3.5.1")
def test_the_token_in_the_x_csrf_token_header_counts_like_the_field(app, user):
    """A JSON post cannot carry the form field; the header carries the same token. A page on
    another site can send neither (a custom header needs a CORS preflight, which authsvc never grants)."""
    client = new_client(app)
    assert login(client).status_code == 303
    token = form_token(client, "/")
    accepted = client.post("/logout", headers={csrf.HEADER: token})
    assert accepted.status_code == 303


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("how", ["header and field", "two headers", "another session's header", "empty header"])
def test_a_header_token_follows_the_same_rules(app, user, how):
    client = new_client(app)
    assert login(client).status_code == 303
    token = form_token(client, "/")
    other = new_client(app)
    others = form_token(other)
    if how == "header and field":
        answer = client.post("/logout", data={"csrf_token": token}, headers={csrf.HEADER: token})
    elif how == "two headers":
        answer = client.post("/logout", headers=[(csrf.HEADER, token), (csrf.HEADER, token)])
    elif how == "another session's header":
        answer = client.post("/logout", headers={csrf.HEADER: others})
    else:
        answer = client.post("/logout", headers={csrf.HEADER: ""})
    assert answer.status_code == 400
    assert client.get("/auth/verify").status_code == 200   # still signed in: nothing was done
