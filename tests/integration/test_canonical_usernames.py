"""Review finding 9 against the real server: ``authsvc serve`` (gunicorn, production settings, one
trusted proxy). Accounts made with look-alike or compatibility names, by ``authsvc user add`` now and
by the old release (rows written as it wrote them: the name as typed, the key canonical), sign in
and /auth/verify answers 200 with the canonical, printable-ASCII name. Before the fix the full-width
account got gunicorn's 500 on every verify (a header cannot hold U+FF23) and ``ªdmin`` reached the
app as ``X-Auth-User: ªdmin``.
"""

from __future__ import annotations

import subprocess

import pytest

from authsvc.core import db
from authsvc.core.hashing import Hasher
from authsvc.core.models import users
from authsvc.core.policy import load_policy
from tests.conftest import PASSWORD, TEST_POLICY, csrf_in
from tests.integration.conftest import (
    authsvc_command,
    require_module,
    served_env,
    serving,
    tail,
)

pytestmark = pytest.mark.integration

ADDRESS, UA = "198.51.100.31", "Mozilla/5.0 (X11) CanonicalNames/1"
PROXY = {"X-Forwarded-For": ADDRESS, "X-Forwarded-Proto": "https", "User-Agent": UA}
# written by the old release: (as typed, key)
OLD_ROWS = [("ªdmin", "admin"), ("ＤＡＶＥ", "dave"), ("Erin", "erin"), ("\u212aim", "kim")]
CLI_ADDED = "ＣＡＲＯＬ"


def sign_in(requests, base: str, username: str) -> str:
    """Form login as a browser behind the trusted proxy; the Cookie header that browser then sends."""
    page = requests.get(f"{base}/login", headers=PROXY, timeout=10)
    token = csrf_in(page.text)
    jar = {c.split("=", 1)[0]: c.split(";", 1)[0] for c in page.raw.headers.getlist("Set-Cookie")}
    answer = requests.post(f"{base}/login", headers={**PROXY, "Cookie": "; ".join(jar.values())},
                           data={"csrf_token": token, "username": username, "password": PASSWORD},
                           allow_redirects=False, timeout=60)
    assert answer.status_code == 303, answer.status_code
    jar.update({c.split("=", 1)[0]: c.split(";", 1)[0] for c in answer.raw.headers.getlist("Set-Cookie")})
    return "; ".join(jar.values())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("names")
    env = served_env(folder)
    subprocess.run([*authsvc_command(), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    engine = db.make_engine(env["AUTHSVC_DATABASE_URL"])
    hashed = Hasher(load_policy(TEST_POLICY).argon2).hash(PASSWORD)
    with engine.begin() as conn:
        for typed, key in OLD_ROWS:
            conn.execute(users.insert().values(username=typed, username_key=key, password_hash=hashed,
                                               disabled=False, created_at=0.0, password_changed_at=0.0))
    engine.dispose()
    with serving(folder, env, user=CLI_ADDED) as served:
        yield served


@pytest.mark.parametrize(("typed", "name"), [
    pytest.param(CLI_ADDED, "carol", id="user-add-full-width"),
    pytest.param("carol", "carol", id="user-add-signed-in-as-canonical"),
    *[pytest.param(typed, key, id=f"old-row-{key}") for typed, key in OLD_ROWS],
    pytest.param("ＡＤＭＩＮ", "admin", id="old-row-signed-in-full-width"),
])
def test_verify_sends_the_canonical_ascii_name_through_gunicorn(server, typed, name):
    require_module("requests")
    import requests

    cookie = sign_in(requests, server.base, typed)
    answer = requests.get(f"{server.base}/auth/verify", headers={**PROXY, "Cookie": cookie}, timeout=10)
    assert answer.status_code == 200, tail(server.log)
    raw = answer.raw.headers.getlist("X-Auth-User")
    assert raw == [name], raw
    api = requests.get(f"{server.base}/api/v1/session", headers={**PROXY, "Cookie": cookie}, timeout=10)
    assert api.status_code == 200 and api.json()["username"] == name
