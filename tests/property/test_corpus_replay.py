"""Replays every line of tests/property/corpus/ (cookies, usernames, passwords) through the oracle
of its property test; corpus/redirects.txt is replayed by test_redirects_property.py. See
corpus/README.md for the file formats and how to add a finding."""

from __future__ import annotations

import base64
import json
import re
import zlib

import pytest

from tests.conftest import Clock, add_user, build_app, cookie_value, login, new_client
from tests.property import regressions
from tests.property.oracles import assert_password_oracle, assert_username_oracle

SESSION = "__Host-authsvc_session"
REMEMBER = "__Host-authsvc_remember"
DEVICE = "__Host-authsvc_device"
SLOTS = {"session": SESSION, "remember": REMEMBER}
PLACEHOLDER = re.compile(r"\{(alice|bob)\.(session|remember|device)\}")
REPLAYED_HERE = {"cookies", "usernames", "passwords"}
REPLAYED_ELSEWHERE = {"redirects": "tests/property/test_redirects_property.py"}


# --- the corpus files themselves ----------------------------------------------------------------------


def test_every_corpus_file_has_a_replay():
    files = {p.stem for p in regressions.CORPUS.glob("*.txt")}
    assert files == set(regressions.TARGETS) == REPLAYED_HERE | set(REPLAYED_ELSEWHERE)
    redirects_test = regressions.CORPUS.parent / "test_redirects_property.py"
    assert '"corpus") / "redirects.txt"' in redirects_test.read_text(encoding="utf-8")


@pytest.mark.parametrize("target", regressions.TARGETS)
def test_every_corpus_line_decodes_and_round_trips(target):
    found = regressions.entries(target)
    assert found, f"corpus/{target}.txt is empty"
    for number, value in found:
        assert regressions.decode_line(regressions.encode_line(value)) == value, (target, number)


@pytest.mark.parametrize("payload", ["/\t/evil.com", "\\\\x", "# x", " \u3002\x00\ud800\U0001f600", "%2f", "", "\\x41"])
def test_encoding_round_trips_any_string(payload):
    line = regressions.encode_line(payload)
    assert line.isascii() and line.isprintable() and not line.startswith("#") and " " not in line
    assert regressions.decode_line(line) == payload


def test_adding_a_finding_appends_it_once(tmp_path, monkeypatch):
    monkeypatch.setattr(regressions, "CORPUS", tmp_path)
    (tmp_path / "passwords.txt").write_text("# header\nold\n")
    assert regressions.add("passwords", "new\ud800 one") is True
    assert regressions.add("passwords", "new\ud800 one") is False
    assert (tmp_path / "passwords.txt").read_text() == "# header\nold\nnew\\ud800\\x20one\n"
    assert [v for _, v in regressions.entries("passwords")] == ["old", "new\ud800 one"]


# --- usernames and passwords ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", regressions.params("usernames"))
def test_username_corpus_holds_the_oracle(raw):
    assert_username_oracle(raw)


@pytest.mark.asvs("V6.2.8")
@pytest.mark.parametrize("password", regressions.params("passwords"))
def test_password_corpus_holds_the_oracle(password):
    assert_password_oracle(password)


def test_the_username_oracle_catches_a_key_that_is_not_plain_ascii(monkeypatch):
    import tests.property.oracles as oracles

    monkeypatch.setattr(oracles, "username_problem", lambda raw, limit: None)  # a rule that accepts anything
    with pytest.raises(AssertionError):
        assert_username_oracle("\u0430lice")  # Cyrillic a


def test_the_password_oracle_catches_a_policy_that_accepts_a_short_password(monkeypatch):
    import tests.property.oracles as oracles

    monkeypatch.setattr(oracles, "password_problems", lambda *a, **k: [])
    with pytest.raises(AssertionError):
        assert_password_oracle("short")


# --- cookies -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("corpus-cookies"), Clock())
    cookies = {}
    for name in ("alice", "bob"):
        add_user(app, name)
        client = new_client(app)
        assert login(client, name, remember=True).status_code == 303
        cookies[name] = {"session": cookie_value(client, SESSION), "remember": cookie_value(client, REMEMBER),
                         "device": cookie_value(client, DEVICE)}
    return app, cookies


def mutate(line: str, cookies: dict) -> tuple[str, str]:
    """A cookies.txt line -> (cookie name, value to present)."""
    slot, operation, *rest = line.split(" ", 2)
    argument = rest[0] if rest else ""
    value = cookies["alice"][slot]
    text = PLACEHOLDER.sub(lambda m: cookies[m.group(1)][m.group(2)], argument)
    if operation == "flip":
        index, bit = (int(x) for x in argument.split())
        index %= len(value)
        value = value[:index] + chr(ord(value[index]) ^ (1 << bit)) + value[index + 1:]
    elif operation == "cut":
        value = value[:int(argument)]
    elif operation == "append":
        value += text
    elif operation == "prepend":
        value = text + value
    elif operation == "literal":
        value = text
    else:
        raise ValueError(f"unknown operation {operation!r} in cookies.txt line {line!r}")
    return SLOTS[slot], value


def present(app, name: str, value: str):
    client = new_client(app, use_cookies=False)
    path = "/auth/verify" if name == SESSION else "/login"
    return client.get(path, environ_overrides={"HTTP_COOKIE": f"{name}={value}"})


def session_payload(set_cookie: str) -> dict:
    """The JSON inside a Set-Cookie of the Flask session ({} when emptied or unreadable)."""
    value = set_cookie.split(";", 1)[0].split("=", 1)[1]
    payload = value.lstrip(".").split(".")[0]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        return json.loads(zlib.decompress(raw) if value.startswith(".") else raw)
    except (ValueError, zlib.error):
        return {}


def logs_in(response) -> bool:
    """Did presenting a remember cookie on /login start a session? (The login form itself always
    sets a session cookie, for its CSRF token; a started session has a user id in it.)"""
    return response.status_code == 303 or any(
        "_user_id" in session_payload(h) for h in response.headers.getlist("Set-Cookie") if h.startswith(SESSION + "="))


def assert_refused(app, cookies, name: str, value: str) -> None:
    # RFC 6265 parsing trims whitespace around a value: " v " is the genuine v, not a forgery.
    genuine_values = {c[slot] for c in cookies.values() for slot in ("session", "remember")}
    is_genuine = value.strip(" \t") in genuine_values
    response = present(app, name, value)
    if name == SESSION:
        assert response.status_code == 401 or is_genuine, (value, response.status_code)
    else:
        assert not logs_in(response) or is_genuine, (value, response.status_code)


@pytest.mark.asvs("V9.1.1", "V9.2.2")
@pytest.mark.parametrize("line", regressions.params("cookies"))
def test_cookie_corpus_mutation_is_refused(genuine, line):
    app, cookies = genuine
    name, value = mutate(line, cookies)
    assert_refused(app, cookies, name, value)
    # The untouched cookie still works: the refusal is the mutation's doing.
    assert present(app, SESSION, cookies["alice"]["session"]).status_code == 200


def test_the_cookie_oracle_refuses_to_pass_an_accepted_forgery(genuine):
    app, cookies = genuine
    with pytest.raises(AssertionError):  # a genuine cookie presented as a "mutation" that is not genuine
        assert_refused(app, {"alice": {"session": "x", "remember": "y"}}, SESSION, cookies["alice"]["session"])


def test_cookie_mutations_do_what_the_grammar_says(genuine):
    _, cookies = genuine
    session = cookies["alice"]["session"]
    assert mutate("session cut -1", cookies) == (SESSION, session[:-1])
    assert mutate("session append \x20", cookies) == (SESSION, session + " ")
    assert mutate("remember literal {bob.session}.", cookies) == (REMEMBER, cookies["bob"]["session"] + ".")
    name, flipped = mutate("session flip -1 0", cookies)
    assert flipped[:-1] == session[:-1] and ord(flipped[-1]) == ord(session[-1]) ^ 1
