"""The OpenID Provider's endpoints (issue 19): discovery, JWKS, authorize, consent, token,
userinfo, revocation. Thin glue: the request is read and judged by
:class:`authsvc.core.oidc.provider.Provider` (rules in authsvc.rules.oidc_*), the grants are
Authlib's filled in by authsvc.core.oidc.grants; this module turns their outcomes into responses.

An unknown client or a redirect_uri the client did not register gets an error page, never a
redirect. Every other answer to the client carries ``state`` as given and ``iss`` (RFC 9207).
Guide: docs/oidc.md.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from authsvc.core.oidc.grants import (
    AccessTokens,
    CodeGrant,
    IdToken,
    PkceS256,
    RefreshGrant,
    Revocation,
)
from authsvc.core.oidc.keys import SigningKeyUnavailable
from authsvc.core.oidc.provider import SINGLE as AUTHORIZE_PARAMS
from authsvc.core.oidc.provider import (
    AuthRequest,
    ErrorPage,
    ErrorRedirect,
    LogoutRequest,
    Provider,
)
from authsvc.core.oidc.store import Client
from authsvc.rules import oidc_logout
from authsvc.rules import oidc_requests as decide
from authsvc.rules.oidc_redirects import csp_source, response_location
from authsvc.rules.oidc_requests import SUPPORTED_SCOPES
from authsvc.web.auth import services
from authsvc.web.errors import respond
from authsvc.web.views.login import sign_out, unrevoked_ended_session

bp = Blueprint("oidc", __name__)
log = logging.getLogger("authsvc")

# Endpoints a client calls with its own credentials (no cookie, no form token, often cross-site):
# exempt from the CSRF and same-origin checks that guard the browser's forms.
CLIENT_ENDPOINTS = frozenset({"oidc.token", "oidc.revoke", "oidc.userinfo"})
# Public metadata and the client-authenticated endpoints a single-page app calls from its origin.
CORS_ENDPOINTS = frozenset({"oidc.discovery", "oidc.jwks", "oidc.token", "oidc.revoke", "oidc.userinfo"})

PAGE_MESSAGES = {
    "unknown_client": "The application that sent you here is not registered with this service.",
    "client_id_missing": "The request does not say which application it is for.",
    "client_id_or_redirect_uri_repeated": "The request names its application or return address more than once.",
    "mfa_set_up_needed": ("This application requires a second factor. Add an authenticator app or a passkey on "
                          "your account page, then sign in to the application again."),
    "signing_key_unavailable": "This service cannot sign the answer right now. Try again later.",
}
LOGOUT_MESSAGES = {
    "unknown_client": "The application that sent you here is not registered with this service.",
    "logout_parameter_repeated": "The sign-out request names something more than once.",
    "logout_state_invalid": "The sign-out request is not valid.",
}
LOGOUT_HINT_MESSAGE = ("The sign-out request carries a sign-in token this service did not issue for this "
                       "application (or one too old). You are still signed in; sign out from your account page.")
LOGOUT_REDIRECT_MESSAGE = ("The address to return to after signing out is not one the application registered, "
                           "so you are not sent there and nothing was changed. You are still signed in; sign out "
                           "from your account page.")
REDIRECT_URI_MESSAGE = ("The return address in this request is not one the application registered, so you are "
                        "not sent there. The link may have been tampered with.")
SCOPE_TEXT = {
    "openid": "who you are (an identifier for your account, and when and how you signed in)",
    "profile": "your username",
    "groups": "the names of the groups you are in",
    "offline_access": "access while you are away (it keeps working until you sign out or it expires)",
}


class OidcServer(AuthorizationServer):
    """Authlib's Flask authorization server carrying the provider the grants use."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(query_client=provider.clients.get, save_token=provider.save_token)
        self.provider = provider
        self.scopes_supported = list(SUPPORTED_SCOPES)
        self.register_token_generator("default", provider.generate_token)
        self.register_grant(CodeGrant, [PkceS256(required=True), IdToken(provider)])
        self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation)


def init_app(app: Flask) -> None:
    """Call before authsvc.web.headers.init_app: the form-action hook must run after Talisman's
    (Flask runs after_request hooks in the reverse order of registration)."""
    provider = app.extensions["authsvc"].oidc
    protector = ResourceProtector()
    protector.register_token_validator(AccessTokens(provider))
    app.extensions["authsvc.oidc"] = (OidcServer(provider), protector)
    app.extensions.setdefault("authsvc.csrf_exempt", set()).update(CLIENT_ENDPOINTS)
    app.after_request(_form_action_for_the_client)
    # Raised by Authlib before its own error handling (its request needs an https URL): a 400.
    app.register_error_handler(OAuth2Error, lambda error: respond(400))


def _client_form_source() -> str | None:
    """The CSP source of the client an OpenID sign-in on this page will end at: the consent page's
    (set by the view), or the one a ``next`` pointing at /oauth/authorize names, when that client
    registered that redirect_uri. The ``next`` is the one the sign-in page carries (``g.form_next``,
    set where login.html and mfa.html are rendered, a wrong password's page too) or the query's:
    never read from a posted body here, which would parse the body of every refused post (a
    cross-site 403, a 429) after the refusal."""
    if g.get("oidc_form_source"):
        return g.oidc_form_source
    raw = g.get("form_next") or request.args.get("next")
    if not raw or not raw.startswith(url_for("oidc.authorize") + "?"):
        return None
    params = parse_qs(urlsplit(raw).query)
    client = _provider().clients.get((params.get("client_id") or [None])[0])
    redirect_uri = (params.get("redirect_uri") or [""])[0]
    if client is None or not client.check_redirect_uri(redirect_uri):
        return None
    return csp_source(redirect_uri)


def _form_action_for_the_client(response):
    """Browsers apply CSP ``form-action`` to the redirects after a form post: the sign-in form's
    post goes on to /oauth/authorize and from there to the client. So a page of an OpenID sign-in
    allows that one client's origin too (after Talisman wrote the policy)."""
    if response.mimetype != "text/html":
        return response
    policy = response.headers.get("Content-Security-Policy")
    source = _client_form_source() if policy and "form-action " in policy else None
    if source:
        response.headers["Content-Security-Policy"] = policy.replace("form-action ", f"form-action {source} ", 1)
    return response


def _server() -> OidcServer:
    return current_app.extensions["authsvc.oidc"][0]


def _provider() -> Provider:
    return services().oidc


@bp.after_request
def _cors(response):
    if request.endpoint in CORS_ENDPOINTS:
        response.headers["Access-Control-Allow-Origin"] = "*"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
    return response


# --- metadata -------------------------------------------------------------------------------------

@bp.get("/.well-known/openid-configuration")
def discovery():
    return jsonify(_provider().discovery())


@bp.get("/oauth/jwks")
def jwks():
    provider = _provider()
    # The first key is made before anything can be signed with it. Its private half is not opened:
    # the public halves are published even when it does not open (tokens signed before still verify).
    provider.keys.ensure()
    return jsonify(provider.keys.jwks())


# --- authorize ------------------------------------------------------------------------------------

def _error_page(reason: str, client_id: str | None = None):
    _provider().audit.emit("oidc_authorize_refused", reason=reason, client_id=client_id)
    message = REDIRECT_URI_MESSAGE if reason.startswith("redirect_uri_") else PAGE_MESSAGES.get(
        reason, "The sign-in request is not valid.")
    return render_template("oidc_error.html", message=message), 400


def _to_client(client: Client, redirect_uri: str, params: list[tuple[str, str]], state: str | None, *,
               status: int = 302):
    """A redirect back to the client's redirect_uri (checked again where the Location is built),
    with ``state`` as given and ``iss`` (RFC 9207). ``status`` 303 after a form post."""
    params = list(params)
    if state is not None:
        params.append(("state", state))
    params.append(("iss", _provider().issuer))
    try:
        location = response_location(redirect_uri, client.redirect_uris, public=client.public, params=params)
    except ValueError:
        return _error_page("redirect_uri_not_registered", client.client_id)
    return redirect(location, status)


def _error_to_client(refusal: ErrorRedirect):
    _provider().audit.emit("oidc_authorize_refused", reason=refusal.error, client_id=refusal.client.client_id)
    return _to_client(refusal.client, refusal.redirect_uri,
                      [("error", refusal.error), ("error_description", refusal.description)], refusal.state)


def _refuse(checked: AuthRequest, error: str, description: str):
    return _error_to_client(ErrorRedirect(checked.client, checked.redirect_uri, error, description, checked.state))


def _checked(source):
    """The authorization request in ``source`` (the query, or the consent form's copy of it) as
    :class:`AuthRequest`, or the response refusing it: a page when it cannot go back to the client
    (unknown client, unregistered redirect URI), else an error redirect to the client."""
    checked = _provider().read_request(lambda name: source.get(name), lambda name: len(source.getlist(name)))
    if isinstance(checked, ErrorPage):
        return _error_page(checked.reason, source.get("client_id"))
    if isinstance(checked, ErrorRedirect):
        return _error_to_client(checked)
    return checked


def _session_step(checked: AuthRequest, record) -> str:
    """What the signed-in session (``record``, None when signed out) must do before ``checked`` is
    answered: :func:`authsvc.core.oidc.provider.Provider.session_step`, told whether the account has
    a second factor (a client that requires one sends an account without any to set one up)."""
    has_factor = record is not None and bool(services().factors.kinds(record.user_id))
    return _provider().session_step(checked, record, has_second_factor=has_factor)


def _params_without(*names: str, source=None) -> list[tuple[str, str]]:
    """The authorization request's own parameters (each once: read_request refused repeats),
    without ``names``; nothing else is carried from page to page."""
    source = request.args if source is None else source
    return [(k, source[k]) for k in AUTHORIZE_PARAMS if k in source and k not in names]


def _to_login(*, again: bool, checked: AuthRequest | None = None):
    """The sign-in page, then back to this request. ``again`` (prompt=login, max_age, step-up):
    the form even for a signed-in browser, and back without prompt/max_age, which the new sign-in
    has just satisfied (else max_age=0 would send the user round forever). The session was marked
    first (:meth:`Provider.ask_reauthentication`), so coming back without signing in gets the same
    answer. A signed-out browser (``checked`` given) comes back with the prompt and max_age of
    :func:`authsvc.rules.oidc_requests.signed_out_way_back`: the one sign-in it needs anyway is
    the fresh one its request asked for."""
    if again:
        back = url_for("oidc.authorize") + "?" + urlencode(_params_without("prompt", "max_age"))
        return redirect(url_for("login.login_form", next=back, reauth=1), 303)
    way_back = None if checked is None else decide.signed_out_way_back(checked.prompt, checked.max_age)
    if way_back is not None:
        back = url_for("oidc.authorize") + "?" + urlencode(_params_without("prompt", "max_age") + list(way_back))
        return redirect(url_for("login.login_form", next=back), 303)
    return redirect(url_for("login.login_form", next=request.full_path), 303)


@bp.get("/oauth/authorize")
def authorize():
    checked = _checked(request.args)
    if not isinstance(checked, AuthRequest):
        return checked
    record = current_user.record if current_user.is_authenticated else None
    step = _session_step(checked, record)
    if step == decide.LOGIN:
        return _to_login(again=False, checked=checked)
    if step == decide.REAUTHENTICATE:
        _provider().ask_reauthentication(record.id)  # the request without prompt/max_age is the same one
        return _to_login(again=True)
    if step == decide.STEP_UP:
        return _to_login(again=True)
    if step == decide.MFA_SET_UP_NEEDED:
        return _error_page("mfa_set_up_needed", checked.client.client_id)
    if step == decide.LOGIN_REQUIRED:
        return _refuse(checked, "login_required", "The user must sign in.")
    consent = _provider().consent_step(checked, record.user_id)
    if consent == decide.CONSENT_REQUIRED:
        return _refuse(checked, "consent_required", "The user has not allowed this application.")
    if consent == decide.ASK:
        return _consent_page(checked)
    return _issue_code(checked, record)


def _issue_code(checked: AuthRequest, record, *, status: int = 302):
    provider = _provider()
    user = provider.end_user(record.user_id, record.id)
    if user is None:  # ended between the two reads
        return _to_login(again=False)
    server = _server()
    try:
        grant = server.get_consent_grant(end_user=user)
        response = server.create_authorization_response(grant=grant, grant_user=user)
    except OAuth2Error as error:  # after our checks only nonce replay gets here
        return _refuse(checked, error.error, error.description or "")
    answered = dict(parse_qsl(urlsplit(response.headers.get("Location", "")).query))
    if response.status_code != 302 or "code" not in answered:
        # Authlib refused after all (a nonce seen before): its error, in our response with iss.
        return _refuse(checked, answered.get("error", "server_error"), answered.get("error_description", ""))
    provider.audit.emit("oidc_code_issued", client_id=checked.client.client_id, scopes=" ".join(checked.scopes))
    return _to_client(checked.client, checked.redirect_uri, [("code", answered["code"])], checked.state,
                      status=status)


def _consent_page(checked: AuthRequest):
    parts = urlsplit(checked.redirect_uri)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"
    g.oidc_form_source = csp_source(checked.redirect_uri)  # its form's post ends at the client
    return render_template("oidc_consent.html", client_name=checked.client.name, username=current_user.username,
                           scopes=checked.scopes, scope_text=SCOPE_TEXT, redirect_origin=origin,
                           remembered=not checked.client.public, params=_params_without("prompt")), 200


@bp.post("/oauth/authorize/consent")
def consent():
    """The consent form (CSRF-checked like every form): allow remembers the scopes for this user
    and client and answers the authorization request with a code at once when the session still
    may (else back to the authorization request, which signs in again, then asks again); deny tells
    the client access_denied. Answering here, not by going back, is what lets a public client's
    user be asked every time (ASVS V10.7.1): its remembered answer is never reused."""
    checked = _checked(request.form)
    if not isinstance(checked, AuthRequest):
        return checked
    if not current_user.is_authenticated:
        return _refuse(checked, "login_required", "The user must sign in.")
    if request.form.get("decision") != "allow":
        return _refuse(checked, "access_denied", "The user said no.")
    g.audit_user_id = current_user.user_id
    _provider().consents.grant(current_user.user_id, checked.client.client_id, checked.scopes)
    _provider().audit.emit("oidc_consent_given", client_id=checked.client.client_id, scopes=" ".join(checked.scopes))
    record = current_user.record
    if _session_step(checked, record) == decide.PROCEED:
        return _issue_code(checked, record, status=303)
    return redirect(url_for("oidc.authorize", **dict(_params_without("prompt", source=request.form))), 303)


# --- RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) --------------------------------

def _read_logout(source) -> ErrorPage | LogoutRequest:
    return _provider().read_logout(lambda name: source.get(name), lambda name: len(source.getlist(name)),
                                   max_hint_age=services().policy.sessions.absolute_lifetime_seconds)


def _logout_refused(reason: str, client_id: str | None):
    _provider().audit.emit("oidc_logout_refused", reason=reason, client_id=client_id)
    if reason.startswith("id_token_hint_"):
        message = LOGOUT_HINT_MESSAGE
    elif reason.startswith("post_logout_redirect_uri_"):
        message = LOGOUT_REDIRECT_MESSAGE
    else:
        message = LOGOUT_MESSAGES.get(reason, "The sign-out request is not valid.")
    return render_template("oidc_logout.html", stage="refused", message=message), 400


def _after_logout(checked: LogoutRequest):
    """Back to the client's registered post_logout_redirect_uri with ``state``, or a page."""
    if checked.redirect_uri is not None and checked.client is not None:
        try:
            location = oidc_logout.logout_location(checked.redirect_uri, checked.client.post_logout_redirect_uris,
                                                   checked.state)
        except ValueError:  # pragma: no cover - read_logout checked it; checked again where it is built
            return _logout_refused("post_logout_redirect_uri_not_registered", checked.client.client_id)
        return redirect(location, 303)
    return make_response(render_template("oidc_logout.html", stage="done", message=None), 200)


def _client_id(checked: LogoutRequest) -> str | None:
    return checked.client.client_id if checked.client is not None else None


@bp.get("/oauth/logout")
def end_session():
    """The end_session_endpoint. Signed out already: straight back. The hint names this very
    session: signed out at once (only an app of this session holds that ID token). Otherwise a
    page asks, with a CSRF-protected form: a link on any site must not sign the user out."""
    checked = _read_logout(request.args)
    if isinstance(checked, ErrorPage):
        return _logout_refused(checked.reason, request.args.get("client_id"))
    provider = _provider()
    signed_in = current_user.is_authenticated
    step = provider.logout_step(checked, current_user.user_id if signed_in else None,
                                current_user.session_id if signed_in else None)
    if step == oidc_logout.NOTHING_TO_END and (request.cookies.get(services().cookies.remember)
                                               or unrevoked_ended_session() is not None):
        # No live session, but a remember-me cookie would start one, or a timed-out session's apps
        # still hold its tokens: ask, and the confirmed sign-out ends it (a link alone must not).
        step = oidc_logout.CONFIRM
    provider.audit.emit("oidc_logout", step=step, client_id=_client_id(checked))
    if step == oidc_logout.NOTHING_TO_END:
        return _after_logout(checked)
    if step == oidc_logout.END_NOW:
        return sign_out(_after_logout(checked), via="oidc", client_id=_client_id(checked))
    if checked.redirect_uri is not None:
        g.oidc_form_source = csp_source(checked.redirect_uri)  # the form's post ends at the client
    params = [(k, v) for k, v in (("client_id", _client_id(checked)),
                                  ("post_logout_redirect_uri", checked.redirect_uri),
                                  ("state", checked.state)) if v is not None]
    return render_template("oidc_logout.html", stage="confirm", message=None,
                           username=current_user.username if signed_in else None,
                           client_name=checked.client.name if checked.client is not None else None,
                           params=params), 200


@bp.post("/oauth/logout/confirm")
def end_session_confirm():
    """The confirmation page's form (CSRF token and same-origin checked like every form). The
    hint is not carried in it: the client it named is."""
    checked = _read_logout(request.form)
    if isinstance(checked, ErrorPage):
        return _logout_refused(checked.reason, request.form.get("client_id"))
    provider = _provider()
    if request.form.get("decision") != "logout":
        provider.audit.emit("oidc_logout", step="declined", client_id=_client_id(checked))
        return redirect(url_for("account.home"), 303)
    provider.audit.emit("oidc_logout", step="confirmed", client_id=_client_id(checked))
    return sign_out(_after_logout(checked), via="oidc", client_id=_client_id(checked))


# --- token, userinfo, revocation -----------------------------------------------------------------

@bp.route("/oauth/token", methods=["POST", "OPTIONS"])
def token():
    if request.method == "OPTIONS":
        return "", 204
    if decide.unreadable_basic(request.headers.get("Authorization")):
        return _invalid_client()
    try:
        return _server().create_token_response()
    except SigningKeyUnavailable as unavailable:
        return _signing_key_unavailable(unavailable)


@bp.route("/oauth/revoke", methods=["POST", "OPTIONS"])
def revoke():
    if request.method == "OPTIONS":
        return "", 204
    if decide.unreadable_basic(request.headers.get("Authorization")):
        return _invalid_client()
    return _server().create_endpoint_response("revocation")


def _signing_key_unavailable(unavailable: SigningKeyUnavailable):
    """No ID token can be signed (the key does not open with the configured secret keys): 503
    ``temporarily_unavailable`` (RFC 6749's code for it), the code not spent
    (:meth:`authsvc.core.oidc.grants.CodeGrant.query_authorization_code` checks first), the
    operator told what to do in the log. Until the review of session 13's OIDC flow: a 500."""
    log.error("%s", unavailable)
    _provider().audit.emit("oidc_token_refused", reason="signing_key_unavailable")
    response = jsonify(error="temporarily_unavailable", error_description=PAGE_MESSAGES["signing_key_unavailable"])
    response.status_code = 503
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _invalid_client():
    """RFC 6749 5.2's answer to client credentials that cannot be read, as Authlib gives it for
    wrong ones: 401, ``WWW-Authenticate: Basic``, never cached."""
    response = jsonify(error="invalid_client")
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="authsvc"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.route("/oauth/userinfo", methods=["GET", "POST", "OPTIONS"])
def userinfo():
    if request.method == "OPTIONS":
        return "", 204
    protector = current_app.extensions["authsvc.oidc"][1]
    try:
        token = protector.acquire_token(["openid"])
    except OAuth2Error as error:
        status, body, headers = error()
        response = jsonify(dict(body) if not isinstance(body, dict) else body)
        response.status_code = status
        for name, value in headers:
            if name.lower() != "content-type":
                response.headers[name] = value
        return response
    provider = _provider()
    user = provider.end_user(token.user_id, token.session_id)
    if user is None:  # pragma: no cover - the token's own check already joins the session
        return jsonify(error="invalid_token"), 401
    return jsonify(provider.claims(user, token.scope))
