"""A certified relying party against a real authsvc: openid-client (Node.js, OpenID Certified) talks
to authsvc served by gunicorn behind nginx (deploy/nginx/authsvc.conf as shipped) over HTTPS with the
test CA, as an app on another domain would.

openid-client (tests/oidc_rp/rp.mjs, pinned in tests/oidc_rp/package-lock.json) does everything an
app does: discovery, the authorization URL (PKCE S256, state, nonce), the callback (state and iss
checked), the code exchange with its own ID token validation (signature by a key from the JWKS, iss,
aud, exp, nonce, at_hash), userinfo, refresh, revocation and RP-initiated logout. This test plays the
browser with `requests`: the real login form with its CSRF token, the second step, the consent page,
and it captures the redirect to the app's callback (nothing listens there; the Location is enough).

Two accounts (a password alone; a password and an authenticator app set up on the account pages),
two clients (confidential with client_secret_basic; public with PKCE alone), both registered with
`authsvc oidc client add --json`. One authsvc and one nginx for the module.

Node.js 20 or newer and `npm ci` in tests/oidc_rp (scripts/test runs it) are needed: without them
the tests skip with the reason, and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from authsvc.rules.second_step import TOTP_PERIOD_SECONDS
from tests.conftest import PASSWORD, ROOT
from tests.integration.conftest import (
    USERNAME,
    _missing,
    authsvc_command,
    authsvc_env,
    example_test_resolves_to_loopback,
    require_binary,
)
from tests.security.factors import app_from_set_up_page

pytestmark = pytest.mark.integration

RP_DIR = ROOT / "tests" / "oidc_rp"
RP_SCRIPT = RP_DIR / "rp.mjs"
NODE_MAJOR = 20            # openid-client 6's baseline
SCOPE = "openid profile offline_access"
# The apps' addresses: nothing listens there; the test reads the redirect's Location.
WEB_CALLBACK = "https://wiki.example.test/oauth/callback"
SPA_CALLBACK = "https://dash.example.test/callback"
WEB_LOGGED_OUT = "https://wiki.example.test/signed-out"
SPA_LOGGED_OUT = "https://dash.example.test/signed-out"
TOTP_USER = "bob"


# --- Node and openid-client --------------------------------------------------------------------------


def require_openid_client() -> str:
    """The node executable, with openid-client installed as tests/oidc_rp/package-lock.json pins it;
    skips (fails under CI=true) when either is missing."""
    node = require_binary("node", "nodejs (20 or newer, e.g. from NodeSource)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = int(re.match(r"v(\d+)", version).group(1))
    if major < NODE_MAJOR:
        _missing(f"node {version} is too old for openid-client 6: Node.js {NODE_MAJOR} or newer is needed")
    locked = json.loads((RP_DIR / "package-lock.json").read_text())["packages"]["node_modules/openid-client"]
    installed = RP_DIR / "node_modules" / "openid-client" / "package.json"
    if not installed.is_file() or json.loads(installed.read_text())["version"] != locked["version"]:
        _missing(f"openid-client {locked['version']} is not installed in tests/oidc_rp: "
                 "npm ci --prefix tests/oidc_rp (scripts/test runs it)")
    return node


class RelyingParty:
    """One openid-client configuration (one client) in a Node process: :meth:`call` sends one
    command of rp.mjs and returns its answer."""

    def __init__(self, node: str, ca: Path, log: Path) -> None:
        env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(ca), "NODE_OPTIONS": ""}
        self.stderr = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([node, str(RP_SCRIPT)], cwd=RP_DIR, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1)
        self.log = log
        self.metadata: dict = {}   # the provider's metadata as openid-client read it (configure)

    def call(self, cmd: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the relying party exited ({self.proc.poll()}):\n{self.log.read_text(errors='replace')}"
        return json.loads(line)

    def ok(self, cmd: str, **args) -> dict:
        answer = self.call(cmd, **args)
        assert answer["ok"], f"openid-client refused {cmd}: {answer['failure']}"
        return answer

    def refused(self, cmd: str, **args) -> dict:
        answer = self.call(cmd, **args)
        assert not answer["ok"], f"openid-client accepted {cmd}: {answer}"
        return answer["failure"]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.stderr.close()


# --- the browser -------------------------------------------------------------------------------------


class Forms(HTMLParser):
    """Every form of a page: its action and its named inputs' values (buttons included)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append((attrs.get("action") or "", {}))
        elif tag in ("input", "button") and self.forms and attrs.get("name"):
            self.forms[-1][1].setdefault(attrs["name"], attrs.get("value") or "")


def forms_of(html: str) -> dict[str, dict[str, str]]:
    parser = Forms()
    parser.feed(html)
    return {action: fields for action, fields in reversed(parser.forms)}  # the first form per action wins


@dataclass
class Authenticator:
    """The user's authenticator app (pyotp); each sign-in needs a time step later than the last used."""
    app: object
    last_step: int

    def next_code(self) -> str:
        now = int(time.time() // TOTP_PERIOD_SECONDS)
        step = max(now, self.last_step + 1)
        assert step <= now + 1, "no unused TOTP step within the allowed drift"
        self.last_step = step
        return self.app.code(step - now)


@dataclass
class Browser:
    """A user's browser: cookies, the test CA, and a person who fills in the forms authsvc shows."""
    session: requests.Session
    username: str
    authenticator: Authenticator | None = None
    pages: list[str] = field(default_factory=list)   # the forms it filled in, in order
    signed_in: bool = False                          # went through the sign-in form already
    consented: set[str] = field(default_factory=set)  # client_ids it allowed

    def go(self, url: str, stop_at: str, *, allow: bool = True, hops: int = 12) -> str:
        """Follow ``url`` through sign-in, second step and consent until a redirect to ``stop_at``
        (an app's address); returns that redirect's Location."""
        response = self.session.get(url, allow_redirects=False, timeout=30)
        for _ in range(hops):
            if response.status_code in (301, 302, 303, 307, 308):
                location = urljoin(response.url, response.headers["Location"])
                if location.startswith(stop_at):
                    return location
                response = self.session.get(location, allow_redirects=False, timeout=30)
                continue
            assert response.status_code == 200, f"{response.url}: {response.status_code}\n{response.text[:2000]}"
            response = self.fill_in(response, allow=allow)
        raise AssertionError(f"no redirect to {stop_at} after {hops} steps: {self.pages}")

    def fill_in(self, page: requests.Response, *, allow: bool) -> requests.Response:
        forms = forms_of(page.text)
        if "/login/mfa" in forms:
            assert self.authenticator is not None, f"{self.username} was asked for a second factor"
            action, data = "/login/mfa", {**forms["/login/mfa"], "code": self.authenticator.next_code()}
        elif "/login" in forms:
            action, data = "/login", {**forms["/login"], "username": self.username, "password": PASSWORD}
            data.pop("remember", None)
        elif "/oauth/authorize/consent" in forms:
            action, data = "/oauth/authorize/consent", {**forms["/oauth/authorize/consent"],
                                                        "decision": "allow" if allow else "deny"}
        else:
            confirm = [a for a in forms if "logout" in a or "end_session" in a or "end-session" in a]
            assert confirm, f"{page.url}: no form this browser knows how to fill in: {list(forms)}"
            action, data = confirm[0], forms[confirm[0]]
        self.pages.append(action)
        return self.session.post(urljoin(page.url, action), data=data, allow_redirects=False, timeout=60)


def new_session(ca: Path) -> requests.Session:
    s = requests.Session()
    s.trust_env = False   # no proxy or CA bundle from the environment: REQUESTS_CA_BUNDLE beats .verify
    s.verify = str(ca)
    s.headers["User-Agent"] = "authsvc-oidc-rp-test"
    return s


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# --- the module's stack: authsvc + nginx, two clients, two accounts -----------------------------------


@dataclass
class Provider:
    stack: object
    env: dict[str, str]
    clients: dict[str, dict]          # "confidential"/"public" -> client_id, secret, callbacks, auth
    browsers: dict[str, Browser]      # "password"/"totp" -> a browser signed in once for the module
    node: str

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([*authsvc_command(), *args], env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, f"authsvc {' '.join(args)}: {done.stderr}"
        return done


@pytest.fixture(scope="module", autouse=True)
def resolve_example_test():
    with example_test_resolves_to_loopback():
        yield


def register(env: dict[str, str], name: str, callback: str, logged_out: str, *flags: str) -> dict:
    done = subprocess.run([*authsvc_command(), "oidc", "client", "add", name, "--redirect-uri", callback,
                           "--post-logout-redirect-uri", logged_out, "--scopes", SCOPE, *flags, "--json"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def set_up_authenticator(stack, username: str) -> Authenticator:
    """Sign in with the password, add an authenticator app on the account pages (the otpauth:// URI
    of the set-up page, confirmed by a first code), as the user would."""
    s = new_session(stack.tls.ca)
    signed_in = Browser(s, username).go(f"{stack.auth}/login", stop_at=f"{stack.auth}/")
    assert signed_in.rstrip("/") == stack.auth, signed_in
    set_up = s.get(f"{stack.auth}/account/totp", allow_redirects=False, timeout=10)
    assert set_up.status_code == 200, set_up.text[:1000]
    app = app_from_set_up_page(set_up.text, time.time)
    step = int(time.time() // TOTP_PERIOD_SECONDS)
    added = s.post(f"{stack.auth}/account/totp", allow_redirects=False, timeout=30,
                   data={**forms_of(set_up.text)["/account/totp"], "code": app.code()})
    assert added.status_code == 200 and "Authenticator app added" in added.text, added.text[:2000]
    return Authenticator(app, step)


@pytest.fixture(scope="module")
def node() -> str:
    return require_openid_client()


@pytest.fixture(scope="module")
def provider(node, stack) -> Provider:   # node first: no servers started for a test that skips
    env = authsvc_env(stack.folder / "authsvc", stack.auth, stack.app)
    subprocess.run([*authsvc_command(), "user", "add", TOTP_USER, "--password-stdin"], env=env, input=PASSWORD + "\n",
                   capture_output=True, text=True, timeout=120, check=True)
    clients = {
        "confidential": {**register(env, "Wiki", WEB_CALLBACK, WEB_LOGGED_OUT), "auth": "client_secret_basic",
                         "callback": WEB_CALLBACK, "logged_out": WEB_LOGGED_OUT},
        "public": {**register(env, "Dashboard", SPA_CALLBACK, SPA_LOGGED_OUT, "--public"), "auth": "none",
                   "callback": SPA_CALLBACK, "logged_out": SPA_LOGGED_OUT},
    }
    authenticator = set_up_authenticator(stack, TOTP_USER)
    browsers = {"password": Browser(new_session(stack.tls.ca), USERNAME),
                "totp": Browser(new_session(stack.tls.ca), TOTP_USER, authenticator)}
    return Provider(stack, env, clients, browsers, node)


@pytest.fixture(scope="module")
def relying_parties(provider, tmp_path_factory):
    """One openid-client configuration per client, in its own Node process, made by discovery."""
    folder = tmp_path_factory.mktemp("rp")
    made = {}
    try:
        for kind, registered in provider.clients.items():
            rp = RelyingParty(provider.node, provider.stack.tls.ca, folder / f"{kind}.log")
            made[kind] = rp
            rp.metadata = rp.ok("configure", issuer=provider.stack.auth, client_id=registered["client_id"],
                                client_secret=registered.get("client_secret"), auth=registered["auth"])["metadata"]
        yield made
    finally:
        for rp in made.values():
            rp.close()


def code_flow(provider: Provider, rp: RelyingParty, client: str, account: str) -> dict:
    """The browser part and openid-client's callback: its validated token response (tokens and the
    ID token's claims). The browser meets the sign-in form (and the second step for an account with
    one) only the first time, and the consent page only the first time for the confidential client
    and every time for the public one (its identity cannot be assured: ASVS V10.7.1)."""
    registered = provider.clients[client]
    browser = provider.browsers[account]
    started = rp.ok("authorize", redirect_uri=registered["callback"], scope=SCOPE)
    browser.pages.clear()
    callback = browser.go(started["url"], stop_at=registered["callback"])
    expected = []
    if not browser.signed_in:
        expected = ["/login", "/login/mfa"] if browser.authenticator else ["/login"]
    if registered["client_id"] not in browser.consented or client == "public":
        expected.append("/oauth/authorize/consent")
    assert browser.pages == expected, f"{account} at {client}: {browser.pages}, not {expected}"
    browser.signed_in = True
    browser.consented.add(registered["client_id"])
    got = query(callback)
    assert set(got) == {"code", "state", "iss"} and got["state"] == started["state"], callback
    return rp.ok("callback", url=callback, state=started["state"])


def browse(provider: Provider, account: str, url: str, registered: dict) -> str:
    """The browser part alone (for the tests that then hand openid-client something to refuse)."""
    browser = provider.browsers[account]
    callback = browser.go(url, stop_at=registered["callback"])
    browser.signed_in = True
    browser.consented.add(registered["client_id"])
    return callback


ACCOUNTS = {"password": (USERNAME, ["pwd"], "1fa"), "totp": (TOTP_USER, ["pwd", "otp", "mfa"], "mfa")}
FLOWS = [pytest.param(client, account, id=f"{client}-{account}")
         for account in ACCOUNTS for client in ("confidential", "public")]


# --- the tests ---------------------------------------------------------------------------------------


def test_discovery_is_accepted_by_a_certified_relying_party(provider, relying_parties):
    """openid-client's discovery checks the issuer against the URL it asked; the metadata must offer
    what an app relies on and nothing it must not use."""
    metadata = relying_parties["public"].metadata
    assert metadata["issuer"] == provider.stack.auth
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert "none" not in metadata["id_token_signing_alg_values_supported"]
    assert {"client_secret_basic", "none"} <= set(metadata["token_endpoint_auth_methods_supported"])
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                     "revocation_endpoint"):
        assert metadata[endpoint].startswith(provider.stack.auth + "/"), endpoint


@pytest.mark.asvs("V10.4.5", "V10.4.6", "V10.4.10", "V10.7.1")
@pytest.mark.parametrize(("client", "account"), FLOWS)
def test_code_flow_with_pkce_validated_by_openid_client_then_refresh_rotates(provider, relying_parties,
                                                                            client, account):
    """Sign-in through the real form (and second step), consent, the code exchanged with PKCE and
    the ID token validated by openid-client (signature from the JWKS, iss, aud, nonce); userinfo;
    a refresh rotates both tokens; the old refresh token then fails, and takes its family with it."""
    rp = relying_parties[client]
    username, amr, acr = ACCOUNTS[account]
    got = code_flow(provider, rp, client, account)
    claims = got["claims"]
    assert claims["iss"] == provider.stack.auth
    assert claims["aud"] in (provider.clients[client]["client_id"], [provider.clients[client]["client_id"]])
    assert claims["amr"] == amr and claims["acr"] == acr, claims
    assert claims["preferred_username"] == username
    assert username not in claims["sub"] and len(claims["sub"]) >= 32
    assert abs(claims["auth_time"] - time.time()) < 600 and claims["sid"]
    assert got["token_type"].lower() == "bearer" and 0 < got["expires_in"] <= 3600
    assert set(got["scope"].split()) == set(SCOPE.split()) and got["refresh_token"]

    info = rp.ok("userinfo", access_token=got["access_token"], sub=claims["sub"])["userinfo"]
    assert info["sub"] == claims["sub"] and info["preferred_username"] == username

    rotated = rp.ok("refresh", refresh_token=got["refresh_token"])
    assert rotated["refresh_token"] not in (None, got["refresh_token"])
    assert rotated["access_token"] != got["access_token"]
    if rotated["claims"] is not None:   # an ID token from a refresh: same user, same sign-in
        assert rotated["claims"]["sub"] == claims["sub"] and rotated["claims"]["auth_time"] == claims["auth_time"]
    assert rp.ok("userinfo", access_token=rotated["access_token"], sub=claims["sub"])["userinfo"]["sub"] == claims["sub"]

    replayed = rp.refused("refresh", refresh_token=got["refresh_token"])
    assert replayed["error"] == "invalid_grant", replayed
    family = rp.refused("refresh", refresh_token=rotated["refresh_token"])
    assert family["error"] == "invalid_grant", family
    gone = rp.refused("userinfo", access_token=rotated["access_token"], sub=claims["sub"])
    assert gone["status"] == 401 or "invalid_token" in json.dumps(gone), gone


@pytest.mark.parametrize(("client", "account"), FLOWS)
def test_revocation_ends_the_access_token_and_the_refresh_token(provider, relying_parties, client, account):
    """RFC 7009 through openid-client: a revoked access token no longer reads userinfo, a revoked
    refresh token no longer refreshes (the browser is signed in already: no form this time)."""
    rp = relying_parties[client]
    got = code_flow(provider, rp, client, account)
    sub = got["claims"]["sub"]
    assert rp.ok("revoke", token=got["access_token"], hint="access_token")["revoked"]
    refused = rp.refused("userinfo", access_token=got["access_token"], sub=sub)
    assert refused["status"] == 401 or "invalid_token" in json.dumps(refused), refused
    assert rp.ok("revoke", token=got["refresh_token"], hint="refresh_token")["revoked"]
    again = rp.refused("refresh", refresh_token=got["refresh_token"])
    assert again["error"] == "invalid_grant", again
    # Revoking a token that is already revoked, or unknown, is still a success (RFC 7009 2.2).
    assert rp.ok("revoke", token=got["refresh_token"])["revoked"]


@pytest.mark.asvs("V10.4.2")
def test_a_code_replayed_through_the_relying_party_is_refused(provider, relying_parties):
    rp = relying_parties["confidential"]
    registered = provider.clients["confidential"]
    started = rp.ok("authorize", redirect_uri=registered["callback"], scope=SCOPE)
    callback = browse(provider, "password", started["url"], registered)
    first = rp.ok("callback", url=callback, state=started["state"], keep=True)
    # The same callback again, with the same verifier and nonce: only the code's single use stops it.
    refused = rp.refused("callback", url=callback, state=started["state"])
    assert refused["error"] == "invalid_grant", refused
    # ... and the tokens the code gave are revoked with it.
    assert rp.refused("refresh", refresh_token=first["refresh_token"])["error"] == "invalid_grant"


def test_an_id_token_with_a_forged_signature_is_refused_by_the_relying_party(provider, relying_parties):
    """The harness really verifies signatures with the provider's JWKS: one altered character in the
    ID token's signature (as a party on the path could make it) fails the exchange."""
    rp = relying_parties["public"]
    registered = provider.clients["public"]
    started = rp.ok("authorize", redirect_uri=registered["callback"], scope=SCOPE)
    callback = browse(provider, "password", started["url"], registered)
    refused = rp.refused("callback", url=callback, state=started["state"], tamper_id_token=True)
    # openid-client's ClientError wraps oauth4webapi's finding.
    assert refused["cause"] and refused["cause"]["message"] == "JWT signature verification failed", refused


def test_an_id_token_for_another_nonce_is_refused_by_the_relying_party(provider, relying_parties):
    """The nonce in the ID token is the one this flow sent: a relying party expecting another one
    (a token injected from another flow) refuses it."""
    rp = relying_parties["confidential"]
    registered = provider.clients["confidential"]
    started = rp.ok("authorize", redirect_uri=registered["callback"], scope=SCOPE)
    callback = browse(provider, "totp", started["url"], registered)
    refused = rp.refused("callback", url=callback, state=started["state"], nonce="not-the-nonce-this-flow-sent")
    assert refused["cause"]["message"] == 'unexpected ID Token "nonce" claim value', refused


def test_a_callback_with_another_flows_state_is_refused_by_the_relying_party(provider, relying_parties):
    rp = relying_parties["public"]
    registered = provider.clients["public"]
    mine = rp.ok("authorize", redirect_uri=registered["callback"], scope=SCOPE)
    theirs = rp.ok("authorize", redirect_uri=registered["callback"], scope=SCOPE)
    callback = browse(provider, "totp", theirs["url"], registered)
    refused = rp.refused("callback", url=callback, state=mine["state"])
    assert refused["cause"]["message"] == 'unexpected "state" response parameter value', refused


@pytest.mark.asvs("V10.6.2")
@pytest.mark.parametrize("client", ["confidential", "public"])
def test_rp_initiated_logout_ends_the_session_and_its_tokens(provider, relying_parties, client, tmp_path):
    """RP-initiated logout 1.0 through openid-client: the end-session URL with id_token_hint,
    post_logout_redirect_uri and state; the browser ends at the registered address with the state,
    the session's refresh token fails, and the next authorization asks for the password again."""
    rp = relying_parties[client]
    assert "end_session_endpoint" in rp.metadata
    registered = provider.clients[client]
    browser = Browser(new_session(provider.stack.tls.ca), USERNAME)   # its own sign-in: this test ends it
    started = rp.ok("authorize", redirect_uri=registered["callback"], scope=SCOPE)
    got = rp.ok("callback", url=browser.go(started["url"], stop_at=registered["callback"]), state=started["state"])
    ended = rp.ok("end_session", id_token_hint=got["id_token"], post_logout_redirect_uri=registered["logged_out"],
                  state="bye-123")
    back = browser.go(ended["url"], stop_at=registered["logged_out"])
    assert query(back).get("state") == "bye-123", back
    assert rp.refused("refresh", refresh_token=got["refresh_token"])["error"] == "invalid_grant"
    browser.pages.clear()
    again = rp.ok("authorize", redirect_uri=registered["callback"], scope=SCOPE)
    browser.go(again["url"], stop_at=registered["callback"])
    assert "/login" in browser.pages, browser.pages
