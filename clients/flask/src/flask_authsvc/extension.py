"""The Flask glue: :class:`Authsvc` binds the settings, the identity headers and Flask-Login.

In the proxy mode the app keeps no login state: every request's user comes from the identity
headers the forward-auth proxy set (Flask-Login's request loader), believed only from the TCP peers
in ``AUTHSVC_TRUSTED_PROXIES``. The Flask session is never written by the extension, and a user id
in it (an old ``login_user``) loads nobody.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape as html_escape
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, abort, current_app, g, redirect, request, url_for
from flask_login import LoginManager, current_user
from markupsafe import Markup

from flask_authsvc.access import FORBIDDEN, LOGIN, STEP_UP, access_verdict
from flask_authsvc.identity import (
    USER,
    Identity,
    Malformed,
    headers_from_environ,
    read_identity,
)
from flask_authsvc.logout_tokens import EndedSessions, MemoryEndedSessions
from flask_authsvc.logsafe import escape
from flask_authsvc.peers import is_trusted
from flask_authsvc.settings import OIDC, ConfigError, Settings, read_secret_keys, read_settings

log = logging.getLogger("flask_authsvc")

# Kept in the request's WSGI environ, not in g: g belongs to the app context, which a test (or a
# worker that pushes one) may keep across several requests.
_VERDICT = "flask_authsvc.verdict"     # this request's Identity or None, once read
_REFUSED = "flask_authsvc.refused"     # a refusal was raised once (an error page must not raise it again)


@dataclass(frozen=True)
class _State:
    settings: Settings
    extension: Authsvc
    oidc: Any = None          # the OidcMode in the OIDC mode


def original_peer(environ: dict[str, Any]) -> object:
    """The TCP peer as the WSGI server saw it, also when the app runs Werkzeug's ``ProxyFix``
    (which replaces ``REMOTE_ADDR`` with the client's address and keeps the original)."""
    orig = environ.get("werkzeug.proxy_fix.orig")
    if isinstance(orig, dict) and "REMOTE_ADDR" in orig:
        return orig["REMOTE_ADDR"]
    return environ.get("REMOTE_ADDR")


def proxy_fix_layers(wsgi_app: object) -> int:
    """How many of Werkzeug's ``ProxyFix`` wrap ``wsgi_app`` (each middleware's ``app`` followed).
    Each layer overwrites the original peer the one outside it kept: under two, the "original"
    peer :func:`original_peer` reads is the ``X-Forwarded-For`` the client wrote."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    layers = 0
    for _ in range(64):
        if wsgi_app is None:
            break
        layers += isinstance(wsgi_app, ProxyFix)
        wsgi_app = getattr(wsgi_app, "app", None)
    return layers


class Authsvc:
    """Delegates an app's login to authsvc.

    ::

        login = LoginManager(app)
        authsvc = Authsvc(app, login)

        @authsvc.user_loader
        def user_for(identity):     # identity.username, .user_id, .groups, .methods
            return User.query.filter_by(username=identity.username).first()

    ``init_app`` reads the settings (a :class:`~flask_authsvc.settings.ConfigError` naming the
    setting when one cannot work) and takes over the login manager's loaders and its unauthorized
    handler. The user loader's ``None`` means "this app has no such user": a 403, since sending a
    user authsvc has signed in back to authsvc's login would loop.
    """

    def __init__(self, app: Flask | None = None, login_manager: LoginManager | None = None, *,
                 ended_sessions: EndedSessions | None = None):
        self.login_manager = login_manager
        # OIDC mode: where back-channel logouts are kept (this process's memory unless given one).
        self._ended_sessions = ended_sessions
        self._user_callback: Callable[[Identity], Any] | None = None
        self._step_up_callback: Callable[[Identity], Any] | None = None
        if app is not None:
            self.init_app(app, login_manager)

    # --- set-up ---------------------------------------------------------------------------------

    def init_app(self, app: Flask, login_manager: LoginManager | None = None) -> None:
        login_manager = login_manager or self.login_manager or getattr(app, "login_manager", None)
        if not isinstance(login_manager, LoginManager):
            raise ConfigError("login_manager", "is missing: pass Flask-Login's LoginManager, "
                                               "Authsvc(app, LoginManager(app))")
        settings = read_settings(app.config)
        oidc = None
        if settings.mode == OIDC:
            _require_authlib()
            read_secret_keys(app.config)
            from flask_authsvc.oidc import OidcMode
            oidc = OidcMode(app, settings, self._ended_sessions or MemoryEndedSessions())
        self.login_manager = login_manager
        app.extensions["authsvc"] = _State(settings, self, oidc)
        login_manager.request_loader(self._load_user)
        login_manager.user_loader(_nobody)   # a user id in the Flask session is not a login
        login_manager.unauthorized_handler(self._unauthorized)
        login_manager.login_view = "authsvc.login" if oidc else settings.url + "/login"
        # First of the app's before-request hooks, so no hook of the app's sees a malformed identity.
        app.before_request_funcs.setdefault(None, []).insert(0, self._check_identity)
        if oidc is not None:
            # authsvc POSTs the logout token server to server, with no CSRF token: CSRFProtect would
            # refuse it (400) and back-channel logout would silently fail. The signed token is the
            # request's proof. A hook ahead of CSRFProtect's own, so a CSRFProtect the app binds
            # after this is exempted too.
            app.before_request_funcs[None].insert(0, _CsrfExemption(app, "authsvc.backchannel_logout"))
        app.context_processor(lambda: {"authsvc": self})

    def user_loader(self, callback: Callable[[Identity], Any]) -> Callable[[Identity], Any]:
        """Register ``callback(identity) -> user or None``; called at most once per request."""
        self._user_callback = callback
        return callback

    def step_up_handler(self, callback: Callable[[Identity], Any]) -> Callable[[Identity], Any]:
        """Register ``callback(identity) -> response`` for a view that needs ``mfa`` the sign-in
        lacks (default: :meth:`step_up_response`)."""
        self._step_up_callback = callback
        return callback

    @property
    def settings(self) -> Settings:
        return current_app.extensions["authsvc"].settings

    @property
    def _oidc(self):
        return current_app.extensions["authsvc"].oidc

    # --- URLs -------------------------------------------------------------------------------------

    def login_url(self, next_url: str | None = None) -> str:
        """authsvc's login page, coming back to ``next_url`` (authsvc checks it against its
        allow-list; a refused one lands on authsvc's own page). OIDC mode: the extension's
        ``/authsvc/login``, which starts the flow and comes back to ``next_url``'s path on this app."""
        if self._oidc is not None:
            return self._oidc.login_url(_local_part(next_url))
        base = self.settings.url + "/login"
        return f"{base}?{urlencode({'next': next_url})}" if next_url else base

    def logout_url(self) -> str:
        """Where "Sign out" goes: authsvc's account page, whose Sign out button ends the session
        for every app. (authsvc signs out only on a POST from its own origin with its CSRF token, so
        no app can end the session by a link or a cross-site form: that is login/logout CSRF.)
        OIDC mode: the extension's ``/authsvc/logout``, which ends this app's sign-in first, on a
        POST from this app's own pages only: a form's action, not a link (:meth:`logout_form`)."""
        if self._oidc is not None:
            return url_for("authsvc.logout")
        return self.settings.url + "/"

    def logout_form(self, label: str = "Sign out") -> Markup:
        """The "Sign out" control for a template, ``{{ authsvc.logout_form() }}``, in either mode.
        OIDC mode: a POST form to :meth:`logout_url` with a button, carrying Flask-WTF's CSRF token
        when the app has ``CSRFProtect`` (which then checks it); the extension's own check refuses a
        POST from another site either way. Proxy mode: a link to authsvc's account page (a GET there
        changes nothing; a form would break under a ``form-action 'self'`` policy). Both carry the
        class ``authsvc-logout`` for the app's style sheet; ``label`` is escaped unless it is ``Markup``."""
        if self._oidc is None:
            return Markup('<a class="authsvc-logout" href="{}">{}</a>').format(self.logout_url(), label)
        return Markup('<form class="authsvc-logout" method="post" action="{}">{}'
                      '<button type="submit">{}</button></form>').format(self.logout_url(), _csrf_field(), label)

    def account_url(self) -> str:
        """authsvc's account page: sessions, password, second factors, Sign out."""
        return self.settings.url + "/"

    def step_up_url(self, next_url: str | None = None) -> str:
        """authsvc's login page with ``step_up=1``: a browser signed in with one factor signs in
        again there, password and second step, and comes back to ``next_url`` with ``mfa``. It is
        the URL authsvc's own ``/auth/verify`` sends a one-factor session to for a ``two_factor``
        access rule (issue 18). An authsvc without it sends a signed-in browser straight back to
        ``next_url`` (``/login/mfa`` is no way in either: it only continues a sign-in whose password
        was just given), which is why the default step-up response is a page with this link, not a
        redirect that could loop. OIDC mode: the extension's login with ``prompt=login``."""
        if self._oidc is not None:
            return self._oidc.login_url(_local_part(next_url), step_up=True)
        base = self.login_url(next_url)
        return base + ("&" if "?" in base else "?") + "step_up=1"

    # --- the current request --------------------------------------------------------------------

    @property
    def identity(self) -> Identity | None:
        """This request's identity, or None (anonymous, or headers from an untrusted peer)."""
        return self._verdict()

    def _verdict(self) -> Identity | None:
        environ = request.environ
        if _VERDICT in environ:
            return environ[_VERDICT]
        if self._oidc is not None:
            if self._oidc.two_session_cookies():
                environ.setdefault(_VERDICT, None)
                self._refuse_once(400)
                return None
            return environ.setdefault(_VERDICT, self._oidc.identity())
        headers = headers_from_environ(environ)
        verdict: Identity | None = None
        if headers:
            peer = original_peer(environ)
            if proxy_fix_layers(current_app.wsgi_app) > 1:
                log.error("authsvc: identity headers refused: the app is wrapped in ProxyFix more than once, so "
                          "the peer it reports is what the client wrote; wrap app.wsgi_app in ProxyFix once")
                environ.setdefault(_VERDICT, None)
                self._refuse_once(503)
                return None
            if not is_trusted(peer, self.settings.trusted_proxies):
                log.warning("authsvc: identity headers from untrusted peer %s ignored (%s %s=%s)",
                            escape(peer), ",".join(sorted(headers)), USER,
                            escape(headers.get(USER, [""])[0]))
            else:
                read = read_identity(headers)
                if isinstance(read, Malformed):
                    environ.setdefault(_VERDICT, None)
                    log.warning("authsvc: malformed identity from %s refused: %s in %s (%s=%s)",
                                escape(peer), read.reason, read.header, USER,
                                escape(headers.get(USER, [""])[0]))
                    self._refuse_once(401)
                    return None
                if isinstance(read, Identity):
                    verdict = read
        return environ.setdefault(_VERDICT, verdict)

    @staticmethod
    def _refuse_once(status: int) -> None:
        """abort(status) the first time; an error page that asks for the user again gets None."""
        if not request.environ.get(_REFUSED):
            request.environ[_REFUSED] = True
            abort(status)

    def _check_identity(self) -> None:
        # Flask-Login caches the user in g, which lives in the app context; one held across
        # requests (tests do) would carry one request's user into the next. Its private name is
        # pinned with Flask-Login (<0.7) and tested (test_identity_is_read_per_request_...).
        g.pop("_login_user", None)
        self._verdict()

    def _load_user(self, _request) -> Any:
        identity = self._verdict()
        if identity is None:
            return None
        if self._user_callback is None:
            raise RuntimeError("Flask-Authsvc: register a user loader with @authsvc.user_loader")
        user = self._user_callback(identity)
        if user is None:
            log.warning("authsvc: the app's user loader has no user for %s (id %s): 403",
                        escape(identity.username), escape(identity.user_id))
            self._refuse_once(403)
        return user

    def _unauthorized(self) -> Response:
        # Only a GET or HEAD can be repeated after the sign-in (authsvc's verify decides the same).
        wanted = request.url if request.method in ("GET", "HEAD") else None
        return redirect(self.login_url(wanted), 302)

    # --- more than @login_required ---------------------------------------------------------------

    def required(self, groups: Sequence[str] = (), mfa: bool = False) -> Callable:
        """A view decorator: a signed-in user (else authsvc's login), in at least one of ``groups``
        (else 403), whose sign-in authsvc judged multi-factor when ``mfa`` (else the step-up
        response: :meth:`step_up_handler`, by default :meth:`step_up_response`)."""
        if isinstance(groups, str) or not all(isinstance(group, str) and group for group in groups):
            raise TypeError("groups must be a list of group names, e.g. groups=['admins']")
        groups = tuple(groups)

        def decorator(view: Callable) -> Callable:
            @functools.wraps(view)
            def guarded(*args, **kwargs):
                identity = self.identity if current_user.is_authenticated else None
                verdict = access_verdict(identity, groups=groups, mfa=mfa)
                if verdict == LOGIN:
                    return current_app.login_manager.unauthorized()
                if verdict == FORBIDDEN:
                    abort(403)
                if verdict == STEP_UP:
                    return (self._step_up_callback or self.step_up_response)(identity)
                return current_app.ensure_sync(view)(*args, **kwargs)
            return guarded
        return decorator

    def step_up_response(self, identity: Identity) -> tuple[str, int, dict[str, str]]:
        """403 with a short page: this page needs a second factor; sign in again with it (the
        step-up link back to this page), or set one up on the account page first. A link, not a
        redirect: an account without a second factor would come straight back, again and again."""
        methods = ", ".join(identity.methods) or "unknown"
        wanted = request.url if request.method in ("GET", "HEAD") else None
        page = ("<!doctype html><title>A second factor is needed</title>"
                "<h1>This page needs a sign-in with a second factor</h1>"
                f"<p>You signed in with: {html_escape(methods)}.</p>"
                f'<p><a href="{html_escape(self.step_up_url(wanted))}">Sign in again with your second factor</a>. '
                f'No second factor yet? Set up an authenticator app or a passkey on your '
                f'<a href="{html_escape(self.account_url())}">account page</a> first.</p>')
        return page, 403, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}


def _csrf_field() -> Markup:
    """Flask-WTF's hidden token field when the app has ``CSRFProtect``, else nothing. Read through
    what ``CSRFProtect.init_app`` publishes (``app.extensions["csrf"]``, the ``csrf_token`` Jinja
    global, ``WTF_CSRF_FIELD_NAME``), so the extension never imports Flask-WTF."""
    generate = current_app.jinja_env.globals.get("csrf_token")
    if "csrf" not in current_app.extensions or not callable(generate):
        return Markup("")
    name = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    return Markup('<input type="hidden" name="{}" value="{}">').format(name, generate())


class _CsrfExemption:
    """Exempts one of the extension's endpoints from Flask-WTF's ``CSRFProtect``, whether the app
    binds it before or after the extension: a before-request hook that runs ahead of
    ``CSRFProtect``'s (which ``CSRFProtect.init_app`` appends to the app's). Through what
    ``CSRFProtect`` publishes (``app.extensions["csrf"]`` and its public ``exempt(view)``), so the
    extension never imports Flask-WTF. Only the named endpoint: the app's other routes and the
    extension's ``/authsvc/logout`` stay protected. After the first request it costs a dict look-up."""

    def __init__(self, app: Flask, endpoint: str):
        self._app = app
        self._endpoint = endpoint
        self._told: object = None      # the CSRFProtect already told (another one may replace it)

    def __call__(self) -> None:
        csrf = self._app.extensions.get("csrf")
        if csrf is None or csrf is self._told:
            return
        exempt = getattr(csrf, "exempt", None)
        if callable(exempt):
            # CSRFProtect keys an exemption by the view's module and name, which it reads from the
            # registered view function when it checks a request: hand it that same function.
            exempt(self._app.view_functions[self._endpoint])
        self._told = csrf


def _nobody(_user_id: str) -> None:
    return None


def _local_part(url: str | None) -> str | None:
    """The path and query of ``url`` (this app's own URL), for the OIDC mode's local ``next``."""
    if not url:
        return None
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _require_authlib() -> None:
    try:
        import authlib  # noqa: F401
    except ImportError:
        raise ConfigError("AUTHSVC_MODE", "is 'oidc', which needs Authlib: pip install 'Flask-Authsvc[oidc]'") from None
