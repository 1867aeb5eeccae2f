"""One name per account, the same everywhere (review finding 9).

The attack: usernames were validated on their normalised key, but the name as typed was stored and
sent. An account created as ``ＣＡＲＯＬ`` signed in and then got a 500 on every verify (a header
cannot hold it), and ``ªdmin`` (key ``admin``) reached apps as ``X-Auth-User: ªdmin``, a name no
other path used. Now the name authsvc shows and sends is the canonical key, printable ASCII, on
every path: /auth/verify (both its fast path and the Flask view), the API, the account page and the
CLI; for accounts created before the fix too (read from the key, no migration needed), and
``authsvc user add`` says which name it created. tests/integration/test_canonical_usernames.py
makes the same attack against the real server.
"""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, add_user, browser, login, run_cli

# (as typed, the one name): look-alike and compatibility forms that fold to printable ASCII
FORMS = [
    pytest.param("ＣＡＲＯＬ", "carol", id="full-width"),
    pytest.param("Carol", "carol", id="title-case"),
    pytest.param("CAROL", "carol", id="upper-case"),
    pytest.param("ªdmin", "admin", id="feminine-ordinal-a"),
    pytest.param("ﬁnance", "finance", id="fi-ligature"),
    pytest.param("\u212aelvin", "kelvin", id="kelvin-sign"),
    pytest.param("\u017fam", "sam", id="long-s"),
    pytest.param("\u210cans", "hans", id="black-letter-h"),
    pytest.param("\u2460bob", "1bob", id="circled-digit"),
    pytest.param("Ｃａｒｏｌ．Ｓｍｉｔｈ", "carol.smith", id="full-width-dot"),
    pytest.param(" Carol ", "carol", id="padded"),
]


def names_everywhere(app, raw: str) -> dict[str, str]:
    """Sign in as ``raw`` and collect the name each path gives."""
    c = browser(app)
    assert login(c, raw).status_code == 303
    fast = c.get("/auth/verify")
    # An Upgrade header makes the fast path hand the request to the Flask view (authsvc.web.views.verify)
    flask_view = c.get("/auth/verify", headers={"Upgrade": "h2c"})
    api = c.get("/api/v1/session").get_json()
    page = c.get("/").get_data(as_text=True)
    assert fast.status_code == flask_view.status_code == 200
    return {"verify": fast.headers["X-Auth-User"], "verify (Flask view)": flask_view.headers["X-Auth-User"],
            "api": api["username"], "page": page.split("Signed in as ", 1)[1].split("<", 1)[0]}


@pytest.mark.parametrize(("typed", "name"), FORMS)
def test_an_account_created_before_the_fix_is_given_its_canonical_name_on_every_path(app, typed, name):
    """The row as the old release wrote it: ``username`` as typed, ``username_key`` canonical."""
    add_user(app, typed)
    seen = names_everywhere(app, typed)
    assert seen == dict.fromkeys(seen, name)
    assert names_everywhere(app, name) == seen  # signing in with the canonical spelling: the same
    assert [a.username for a in app.extensions["authsvc"].accounts.all()] == [name]


@pytest.mark.parametrize(("typed", "name"), FORMS)
def test_user_add_creates_the_canonical_name_and_says_so(app, tmp_path, monkeypatch, capsys, typed, name):
    code = run_cli(monkeypatch, tmp_path, "user", "add", typed, "--password-stdin", stdin=PASSWORD + "\n")
    out = capsys.readouterr().out
    assert code == 0
    assert f"is written {name}" in out and f"created user {name} " in out, out
    seen = names_everywhere(app, typed)
    assert seen == dict.fromkeys(seen, name)
    assert run_cli(monkeypatch, tmp_path, "user", "list") == 0
    assert f"\t{name}\t" in capsys.readouterr().out


def test_user_add_of_a_canonical_name_prints_no_note(app, tmp_path, monkeypatch, capsys):
    assert run_cli(monkeypatch, tmp_path, "user", "add", "carol", "--password-stdin", stdin=PASSWORD + "\n") == 0
    out = capsys.readouterr().out
    assert "is written" not in out and "created user carol " in out


@pytest.mark.parametrize("typed", ["ＣＡＲＯＬ", "ªdmin", "Carol"])
def test_every_header_value_authsvc_sends_is_printable_ascii(app, typed):
    add_user(app, typed)
    seen = names_everywhere(app, typed)
    assert all(value.isascii() and value.isprintable() for value in seen.values()), seen


@pytest.mark.parametrize("spelling", ["alicé", "alice\u0301", "álice", "alïce", "ａｌｉｃé"])
def test_allauth_cve_2026_97764_an_accented_spelling_is_another_name_that_signs_nobody_in(app, spelling):
    """allauth CVE-2026-97764's class: diacritics. Folding (NFKC, case) never strips an accent, so an
    accented spelling is another name: it has no account, its right-password login fails like any
    unknown user's, and its failures are its own bucket, never a fresh budget for alice's password
    (alice's back-off is counted under alice: tests/security/test_throttle.py)."""
    add_user(app)
    svc = app.extensions["authsvc"]
    assert svc.accounts.by_username(spelling) is None
    client = browser(app, "198.51.100.40")
    assert login(client, spelling, PASSWORD).status_code == 401
    assert client.get("/auth/verify").status_code == 401
    assert login(client, "alice", PASSWORD).status_code == 303
