"""The Mega-Tutorial's microblog (examples/microblog) as an OpenID Connect client of a real authsvc:
flask_authsvc's OIDC mode against authsvc's own OpenID Provider (docs/oidc.md), not a fake one.

The stack (tests/integration/microblog_stack.py, ``microblog_oidc_stack``): authsvc behind the
shipped nginx config on https://auth.example.test with a throw-away CA; the microblog under gunicorn
on plain http on loopback, registered with ``authsvc oidc client add`` (its exact redirect URI and
back-channel logout URI), not trusted (so the consent page is part of the round trip). The test
plays the browser with ``requests``: microblog -> authsvc's authorize -> the real login form (CSRF
token) -> the second step when there is one -> consent -> the microblog's callback.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import http.client
import re
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pyotp
import pytest
import requests

from tests.conftest import PASSWORD, csrf_in
from tests.integration.conftest import (
    USERNAME,
    authsvc_command,
)
from tests.integration.microblog_stack import (
    OIDC_GUNICORN_ARGS,
    OidcBlog,
    browser,
    microblog_oidc_stack,
    microblog_server,
    module_fixtures,
)

pytestmark = pytest.mark.integration

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


blog, resolve_example_test, logs_on_failure = module_fixtures(microblog_oidc_stack, "microblog-oidc")


def get(s: requests.Session, url: str, **kwargs) -> requests.Response:
    return s.get(url, allow_redirects=False, timeout=20, **kwargs)


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


@dataclass
class Trip:
    """Where the browser went (every URL, in order) and where it ended."""
    urls: list[str] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)      # which authsvc pages it filled in
    last: requests.Response | None = None


def browse(blog: OidcBlog, s: requests.Session, url: str, *, username: str = USERNAME, totp=None,
           consent: str = "allow", max_steps: int = 20) -> Trip:
    """Follow redirects from ``url`` as a browser would, filling in authsvc's pages on the way
    (login form, second step with ``totp``, consent with ``consent``), until a page that is none
    of those (or a redirect off both sites)."""
    trip = Trip()
    for _ in range(max_steps):
        trip.urls.append(url)
        response = get(s, url)
        trip.last = response
        if response.status_code in (301, 302, 303, 307, 308):
            url = urljoin(url, response.headers["Location"])
            continue
        if response.status_code != 200 or not url.startswith(blog.auth):
            return trip
        page, path = response.text, urlsplit(url).path
        if path == "/login" and 'name="password"' in page:
            trip.pages.append("login")
            data = {**hidden_fields(page), "username": username, "password": PASSWORD}
            response = s.post(f"{blog.auth}/login", data=data, allow_redirects=False, timeout=30)
        elif path == "/login/mfa":
            trip.pages.append("mfa")
            assert totp is not None, "authsvc asked for a second factor the test has not got"
            data = {**hidden_fields(page), "code": totp.now_fresh()}
            response = s.post(f"{blog.auth}/login/mfa", data=data, allow_redirects=False, timeout=30)
        elif "Allow Microblog?" in page:
            trip.pages.append("consent")
            data = {**hidden_fields(page), "decision": consent}
            response = s.post(f"{blog.auth}/oauth/authorize/consent", data=data, allow_redirects=False, timeout=30)
        else:
            return trip
        trip.last = response
        assert response.status_code == 303, (trip.pages, response.status_code, response.text[:800])
        url = urljoin(url, response.headers["Location"])
    raise AssertionError(f"more than {max_steps} steps: {trip.urls}")


def sign_in(blog: OidcBlog, path: str = "/index", **kwargs) -> tuple[requests.Session, Trip]:
    s = browser(blog)
    trip = browse(blog, s, f"{blog.app}{path}", **kwargs)
    assert trip.last is not None and trip.last.status_code == 200, (trip.urls, trip.last.text[:800])
    return s, trip


def authsvc_cli(blog: OidcBlog, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run([*authsvc_command(), *args], env=blog.authsvc_env, input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def sign_out_at_authsvc(blog: OidcBlog, s: requests.Session) -> None:
    account = get(s, f"{blog.auth}/")
    assert account.status_code == 200, account.text[:500]
    ended = s.post(f"{blog.auth}/logout", data={"csrf_token": csrf_in(account.text)}, allow_redirects=False,
                   timeout=10)
    assert ended.status_code == 303


LOGOUT_FORM = re.compile(r'<form class="authsvc-logout" method="post" action="([^"]+)">(.*?)</form>', re.DOTALL)


def log_out(blog: OidcBlog, s: requests.Session, headers: dict[str, str] | None = None) -> requests.Response:
    """The microblog's Logout button pressed, as a browser posts it: the form's action and fields
    from the app's page, with the browser's Origin and Sec-Fetch-Site (``headers`` replace them)."""
    page = get(s, f"{blog.app}/index")
    assert page.status_code == 200, page.text[:500]
    form = LOGOUT_FORM.search(page.text)
    assert form, page.text[:500]
    sent = {"Origin": blog.app, "Sec-Fetch-Site": "same-origin"} if headers is None else headers
    return s.post(urljoin(blog.app, html.unescape(form.group(1))), data=hidden_fields(form.group(2)),
                  headers=sent, allow_redirects=False, timeout=20)


def direct(blog: OidcBlog, path: str, headers: dict[str, str], cookie: str = "") -> tuple[int, dict[str, str], str]:
    """A request straight to the microblog from 127.0.0.1, with hand-made headers."""
    conn = http.client.HTTPConnection("127.0.0.1", blog.app_port, timeout=10)
    try:
        conn.request("GET", path, headers={**headers, **({"Cookie": cookie} if cookie else {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


class Authenticator:
    """An authenticator app (pyotp) that never shows the same code twice: authsvc takes each
    time step's code once."""

    def __init__(self, uri: str):
        self.totp = pyotp.parse_uri(uri)
        self.used: set[int] = set()

    def now_fresh(self) -> str:
        step = int(time.time() // 30)
        while step in self.used:
            if step > int(time.time() // 30) + 1:   # one step ahead is accepted; wait for more
                time.sleep(1)
                continue
            step += 1
        self.used.add(step)
        return self.totp.generate_otp(step)


# --- the delegated login, end to end -----------------------------------------------------------------

@pytest.mark.asvs("V10.1.2", "V10.4.6", "V10.7.1")
def test_sign_in_is_the_real_code_flow_through_authsvcs_login_form_and_consent(blog):
    s = browser(blog)
    first = get(s, f"{blog.app}/index")
    assert first.status_code == 302
    assert urljoin(blog.app, first.headers["Location"]) == f"{blog.app}/authsvc/login?next=/index"

    start = get(s, urljoin(blog.app, first.headers["Location"]))
    assert start.status_code == 302
    authorize = urlsplit(start.headers["Location"])
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == blog.discovery["authorization_endpoint"]
    asked = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    assert asked["client_id"] == blog.client_id and asked["redirect_uri"] == blog.callback
    assert asked["response_type"] == "code" and asked["code_challenge_method"] == "S256"
    assert asked["scope"] == blog.scopes and asked["nonce"] and asked["state"]

    trip = browse(blog, s, start.headers["Location"])
    assert trip.pages == ["login", "consent"]
    callback = [url for url in trip.urls if url.startswith(blog.callback)]
    assert len(callback) == 1
    answer = {k: v[0] for k, v in parse_qs(urlsplit(callback[0]).query).items()}
    assert answer["state"] == asked["state"] and answer["iss"] == blog.auth
    assert trip.urls[-1] == f"{blog.app}/index"
    assert trip.last.status_code == 200 and "<h1>Hi, alice!</h1>" in trip.last.text    # current_user

    profile = get(s, f"{blog.app}/user/alice")
    assert profile.status_code == 200 and "Signed in through authsvc with: pwd;" in profile.text
    # Consent is remembered: a second browser of alice's signs in with the form only.
    assert sign_in(blog)[1].pages == ["login"]


def test_the_user_row_is_the_accounts_subject_and_is_kept_across_sign_ins(blog):
    """The microblog keys its user on the ID token's ``sub``: authsvc's opaque 43-character subject
    (not the username, not the account number), the same at every sign-in, one row."""
    import sqlite3

    for _ in range(2):
        s, _trip = sign_in(blog)
        assert "<h1>Hi, alice!</h1>" in get(s, f"{blog.app}/index").text
    assert get(s, f"{blog.app}/user/alice").status_code == 200
    with contextlib.closing(sqlite3.connect(blog.logs["microblog"].parent / "app.db")) as db:
        rows = db.execute("SELECT authsvc_id FROM user WHERE nickname = 'alice'").fetchall()
    assert len(rows) == 1 and re.fullmatch(r"[A-Za-z0-9_-]{43}", rows[0][0]), rows


@pytest.mark.asvs("V10.1.2")
def test_a_callback_with_a_code_but_another_state_is_refused(blog):
    """Login CSRF: an attacker's own code, pushed into the victim's browser with a state the
    victim's session never made, signs nobody in."""
    attacker, _ = sign_in(blog)   # any signed-in browser: the code below is a fresh one of the attacker's
    victim = browser(blog)
    start = get(victim, f"{blog.app}/authsvc/login?next=/index")
    code = fresh_code(blog, attacker)
    refused = get(victim, f"{blog.callback}?code={code}&state=not-the-victims&iss={blog.auth}")
    assert refused.status_code == 401
    assert start.status_code == 302
    assert get(victim, f"{blog.app}/index").status_code == 302


@pytest.mark.asvs("V10.2.2")
def test_an_authorization_response_naming_another_issuer_is_refused(blog):
    """RFC 9207 mix-up defence: authsvc advertises ``iss`` in its authorization responses, so the
    callback refuses a response without it or naming another issuer, even with a good code and
    state; the same response with authsvc's ``iss`` then signs in."""
    assert blog.discovery["authorization_response_iss_parameter_supported"] is True
    s, _ = sign_in(blog)
    assert log_out(blog, s).status_code == 303
    start = get(s, f"{blog.app}/authsvc/login?next=/index")
    answer = get(s, start.headers["Location"])          # signed in at authsvc, consent given: straight back
    assert answer.status_code == 302 and answer.headers["Location"].startswith(blog.callback)
    params = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    assert params["iss"] == blog.auth
    for iss in ("https://evil.example.test", f"{blog.auth}/", None):
        forged = {**params, "iss": iss} if iss else {k: v for k, v in params.items() if k != "iss"}
        assert get(s, f"{blog.callback}?{urlencode(forged)}").status_code == 401
    assert get(s, f"{blog.app}/index").status_code == 302
    back = get(s, f"{blog.callback}?{urlencode(params)}")
    assert back.status_code == 303 and get(s, f"{blog.app}/index").status_code == 200


def test_an_app_that_does_not_trust_authsvcs_ca_answers_503_and_says_how_to_fix_it(blog, tmp_path):
    """The same microblog with requests' default CA bundle (certifi) instead of the test CA: the
    discovery fetch fails TLS verification, the login is a 503 (never a sign-in over an unchecked
    connection, never a 500), and the log names REQUESTS_CA_BUNDLE."""
    import certifi

    settings = {**blog.settings, "REQUESTS_CA_BUNDLE": certifi.where()}
    with microblog_server(tmp_path / "untrusting", blog.auth, settings=settings,
                          gunicorn_args=OIDC_GUNICORN_ARGS) as (port, log):
        assert requests.get(f"http://127.0.0.1:{port}/authsvc/login", allow_redirects=False,
                            timeout=20).status_code == 503
    logged = log.read_text(errors="replace")
    assert "OIDC discovery at" in logged and "SSLError" in logged and "REQUESTS_CA_BUNDLE" in logged


# --- groups ---------------------------------------------------------------------------------------------

def test_groups_reach_the_app_only_through_the_groups_scope(blog):
    """alice is in authsvc's group ``moderators`` (``authsvc group add`` / ``authsvc user groups``).
    With a provider that offers the ``groups`` scope (the stack asks for it then), the ID token
    carries it and ``@authsvc.required(groups=["moderators"])`` lets her in. Without it (authsvc's
    provider before the scope exists), the app has no group it was not given: the page is a 403."""
    s, _ = sign_in(blog)
    profile = get(s, f"{blog.app}/user/alice").text
    moderation = get(s, f"{blog.app}/moderation")
    if "groups" in blog.discovery.get("scopes_supported", ()):
        assert "groups" in blog.scopes.split()
        assert "; groups: moderators." in profile
        assert moderation.status_code == 200 and "Moderation" in moderation.text
    else:
        assert "; groups: none." in profile
        assert moderation.status_code == 403


# --- a second factor: step-up with prompt=login ---------------------------------------------------------

@pytest.mark.asvs("V6.3.3")
def test_a_page_needing_mfa_steps_up_through_authsvc_with_prompt_login(blog):
    """carol signs in to the microblog with her password (no second factor yet: amr pwd). Its
    ``required(mfa=True)`` page answers with the step-up page. She adds an authenticator app on
    authsvc's account page (same browser) and follows the step-up link: the OIDC flow again with
    prompt=login, where authsvc asks for the password and the code although its session is alive,
    and the new ID token's amr has mfa: the page opens."""
    authsvc_cli(blog, "user", "add", "carol", "--password-stdin", stdin=PASSWORD + "\n")
    s, trip = sign_in(blog, "/user/carol", username="carol")
    assert trip.pages == ["login", "consent"]
    assert "Signed in through authsvc with: pwd;" in trip.last.text
    page = get(s, f"{blog.app}/edit")
    assert page.status_code == 403 and "needs a sign-in with a second factor" in page.text

    set_up = get(s, f"{blog.auth}/account/totp")
    uri = re.search(r'id="otpauth-uri">([^<]+)<', set_up.text)
    assert uri, set_up.text[:800]
    app = Authenticator(html.unescape(uri.group(1)))
    confirmed = s.post(f"{blog.auth}/account/totp", data={"csrf_token": csrf_in(set_up.text),
                                                          "code": app.now_fresh()}, timeout=10)
    assert confirmed.status_code == 200 and "Authenticator app added" in confirmed.text

    link = html.unescape(re.search(r'<a href="([^"]+)">Sign in again', page.text).group(1))
    start = get(s, urljoin(blog.app, link))
    assert start.status_code == 302
    assert parse_qs(urlsplit(start.headers["Location"]).query)["prompt"] == ["login"]
    stepped = browse(blog, s, start.headers["Location"], username="carol", totp=app)
    assert stepped.pages == ["login", "mfa"]
    assert stepped.urls[-1] == f"{blog.app}/edit"
    assert stepped.last.status_code == 200 and "Edit your profile" in stepped.last.text
    assert "Signed in through authsvc with: pwd, otp, mfa;" in get(s, f"{blog.app}/user/carol").text


@pytest.mark.asvs("V6.3.3")
def test_a_one_factor_sign_in_gets_the_step_up_page_and_prompt_login(blog):
    """alice has no second factor: the ``required(mfa=True)`` page is the step-up page, whose
    link starts the flow with prompt=login (authsvc shows the login form again, even though its
    session is alive), and without a factor she comes back to the same page, no loop."""
    s, _ = sign_in(blog)
    page = get(s, f"{blog.app}/edit")
    assert page.status_code == 403 and "needs a sign-in with a second factor" in page.text
    link = html.unescape(re.search(r'<a href="([^"]+)">Sign in again', page.text).group(1))
    assert urlsplit(link).path == "/authsvc/login" and parse_qs(urlsplit(link).query)["step_up"] == ["1"]
    start = get(s, urljoin(blog.app, link))
    asked = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    assert asked["prompt"] == "login"
    trip = browse(blog, s, start.headers["Location"])
    assert trip.pages == ["login"]                    # asked again despite the live session
    assert trip.urls[-1] == f"{blog.app}/edit" and trip.last.status_code == 403


# --- sign-out --------------------------------------------------------------------------------------------

def test_logout_ends_the_apps_sign_in_and_leads_to_authsvcs_sign_out(blog):
    """The microblog's Logout button ends its own sign-in and goes to authsvc's account page, whose
    Sign out ends authsvc's session (authsvc signs out only on its own POST with its CSRF token; it
    has no RP-initiated logout endpoint). Until then, signing in to the app again needs no form."""
    s, _ = sign_in(blog)
    out = log_out(blog, s)
    assert out.status_code == 303 and out.headers["Location"] == f"{blog.auth}/"
    assert get(s, f"{blog.app}/index").status_code == 302           # the app's sign-in is gone
    again = browse(blog, s, f"{blog.app}/index")
    assert again.pages == [] and "<h1>Hi, alice!</h1>" in again.last.text   # authsvc's session is not
    assert log_out(blog, s).status_code == 303
    sign_out_at_authsvc(blog, s)
    assert browse(blog, s, f"{blog.app}/index").pages == ["login"]


CROSS_SITE_SIGN_OUTS = [
    {"Origin": "https://evil.example.test", "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "null"},
    {"Origin": "https://evil.example.test"},
]


@pytest.mark.asvs("V3.5.1")
def test_another_site_cannot_sign_the_user_out_of_the_app(blog):
    """Cross-site sign-out: an <img> (a GET) or another site's form posting to /authsvc/logout. The
    GET shows the Sign out button and ends nothing; a POST from elsewhere is a 403."""
    s, _ = sign_in(blog)
    page = get(s, f"{blog.app}/authsvc/logout", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"})
    assert page.status_code == 200 and page.headers["X-Frame-Options"] == "DENY"
    assert LOGOUT_FORM.search(page.text)
    for headers in CROSS_SITE_SIGN_OUTS:
        assert log_out(blog, s, headers).status_code == 403, headers
    assert "<h1>Hi, alice!</h1>" in get(s, f"{blog.app}/index").text      # still signed in
    assert log_out(blog, s).status_code == 303


@pytest.mark.asvs("V7.4.1")
def test_a_session_cookie_saved_before_logout_signs_nobody_in_after_it(blog):
    """Flask's session is a signed cookie the server keeps no record of: a copy saved before the
    Logout (a stolen one, a shared computer) would still carry the sign-in. The extension records
    the ended sign-in, so the copy is refused."""
    s, _ = sign_in(blog)
    cookie = s.cookies.get("session", domain="127.0.0.1")
    assert cookie
    status, _, body = direct(blog, "/index", {}, cookie=f"session={cookie}")
    assert status == 200 and "<h1>Hi, alice!</h1>" in body      # the copy works while signed in
    assert log_out(blog, s).status_code == 303
    status, headers, _ = direct(blog, "/index", {}, cookie=f"session={cookie}")
    assert status == 302 and "/authsvc/login" in headers["Location"]


# --- forged identity ---------------------------------------------------------------------------------------

@pytest.mark.asvs("V4.1.3")
def test_forged_identity_headers_sent_to_the_oidc_mode_app_are_ignored(blog):
    """The OIDC mode reads no identity headers, from any address (127.0.0.1 included, which the
    proxy mode would trust): anonymous stays anonymous, alice stays alice with her own methods."""
    forged = {"Host": f"127.0.0.1:{blog.app_port}", "X-Auth-User": "mallory", "X-Auth-User-Id": "1",
              "X-Auth-Groups": "moderators", "X-Auth-Methods": "pwd,otp,mfa"}
    status, headers, _ = direct(blog, "/index", forged)
    assert status == 302 and headers["Location"].endswith("/authsvc/login?next=/index")
    status, _, _ = direct(blog, "/moderation", forged)
    assert status == 302
    s, _ = sign_in(blog)
    profile = get(s, f"{blog.app}/user/alice", headers=forged)
    assert "Signed in through authsvc with: pwd;" in profile.text and "otp" not in profile.text
    assert get(s, f"{blog.app}/edit", headers=forged).status_code == 403
    assert "<h1>Hi, alice!</h1>" in get(s, f"{blog.app}/index", headers={"X-Auth-User": "mallory"}).text


# --- back-channel logout ---------------------------------------------------------------------------------

def fresh_code(blog: OidcBlog, s: requests.Session, verifier: str | None = None) -> str:
    """A code for the microblog's client, taken from the redirect to its callback instead of
    following it (the test acts as the microblog's back end, with its credentials)."""
    verifier = verifier or secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"response_type": "code", "client_id": blog.client_id, "redirect_uri": blog.callback,
              "scope": blog.scopes, "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
              "code_challenge": challenge, "code_challenge_method": "S256"}
    answer = get(s, f"{blog.discovery['authorization_endpoint']}?{urlencode(params)}")
    assert answer.status_code == 302 and answer.headers["Location"].startswith(blog.callback), answer.text[:500]
    assert "code" in parse_qs(urlsplit(answer.headers["Location"]).query), answer.headers["Location"]
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def test_a_real_id_token_posted_as_a_logout_token_ends_nothing(blog):
    """An ID token signed by authsvc for this very client passes the signature check against
    authsvc's published keys, but it is no logout token (no logout event, a nonce): refused, and
    the sign-in it names lives on."""
    s, _ = sign_in(blog)
    verifier = secrets.token_urlsafe(48)
    code = fresh_code(blog, s, verifier)
    tokens = requests.post(blog.discovery["token_endpoint"], auth=(blog.client_id, blog.client_secret),
                           data={"grant_type": "authorization_code", "code": code, "redirect_uri": blog.callback,
                                 "code_verifier": verifier}, verify=str(blog.tls.ca), timeout=20)
    assert tokens.status_code == 200, tokens.text
    refused = requests.post(f"{blog.app}/authsvc/backchannel-logout", data={"logout_token": tokens.json()["id_token"]},
                            timeout=20)
    assert refused.status_code == 400
    assert refused.json()["error_description"] in ("not_a_logout_token", "nonce_present")
    assert get(s, f"{blog.app}/index").status_code == 200


@pytest.mark.parametrize("token", ["", "x" * 20_000, "e30.e30.", "eyJhbGciOiJub25lIn0.eyJzaWQiOiJ4In0."])
def test_hostile_logout_tokens_are_a_400_not_a_500(blog, token):
    response = requests.post(f"{blog.app}/authsvc/backchannel-logout", data={"logout_token": token}, timeout=20)
    assert response.status_code == 400


def backchannel_posts(blog: OidcBlog) -> int:
    return blog.logs["microblog"].read_text(errors="replace").count('"POST /authsvc/backchannel-logout')


def test_signing_out_at_authsvc_ends_the_apps_sign_in_by_back_channel_logout(blog):
    """alice signs out on authsvc's account page; authsvc posts a logout token for her session to
    the microblog's registered back-channel URI (docs/oidc.md, "Back-channel logout"), the
    microblog accepts it, and her next request to the microblog is signed out."""
    assert blog.discovery.get("backchannel_logout_supported") is True
    s, _ = sign_in(blog)
    before = backchannel_posts(blog)
    seen = len(blog.logs["microblog"].read_text(errors="replace"))
    sign_out_at_authsvc(blog, s)
    deadline = time.monotonic() + 20
    while backchannel_posts(blog) == before:
        assert time.monotonic() < deadline, "authsvc sent the microblog no logout token"
        time.sleep(0.2)
    # Earlier tests posted hostile tokens on purpose: only what came after the sign-out counts.
    assert "back-channel logout refused" not in blog.logs["microblog"].read_text(errors="replace")[seen:]
    deadline = time.monotonic() + 10
    while get(s, f"{blog.app}/index").status_code != 302:
        assert time.monotonic() < deadline, "the microblog still has alice signed in"
        time.sleep(0.2)


def test_the_examples_documented_oidc_command_signs_in(tmp_path):
    """examples/microblog/run.sh --oidc --check runs serve.py in this environment (run.sh first
    makes sure of the virtualenv): its own stack, one sign-in through the real form, "OK"."""
    import sys

    from tests.conftest import ROOT
    from tests.integration.conftest import free_port

    done = subprocess.run([sys.executable, str(ROOT / "examples" / "microblog" / "serve.py"), "--oidc", "--check",
                           "--port", str(free_port())], capture_output=True, text=True, timeout=300, check=False,
                          cwd=tmp_path)
    assert done.returncode == 0 and "microblog (OIDC): OK" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
