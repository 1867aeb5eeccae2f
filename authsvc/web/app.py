"""The application factory: settings in, a configured Flask app out.

Everything that can be done once is done here (policy parsing, redirect rules, header strings,
the argon2 dummy hash, serializers); views only call the services bound in ``app.extensions``.
In production, :func:`create_app` refuses unsound settings with :class:`StartupRefused`.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Callable

from flask import Flask
from sqlalchemy.engine import Engine

from authsvc.core import config as config_mod
from authsvc.web import logging_setup
from authsvc.core.accounts import AccountStore
from authsvc.core.audit import Audit
from authsvc.core.db import make_engine
from authsvc.core.devices import DeviceCookies, DeviceRegistry
from authsvc.web.forms import StrictRequest
from authsvc.core.hashing import Hasher
from authsvc.web.limiter import make_storage
from authsvc.core.login_flow import LoginService
from authsvc.web.metrics import Metrics
from authsvc.rules.passkeys import relying_party
from authsvc.rules.passwords import Blocklist, PasswordRules, load_default_blocklist
from authsvc.core.passkeys import CHALLENGE_SECONDS, PasskeyService, PasskeyStore
from authsvc.core.spent_once import SpentOnce
from authsvc.core.policy import Policy
from authsvc.web.proxies import TrustedProxies
from authsvc.rules.forward_auth import LoginRedirect, login_url
from authsvc.rules.redirects import RedirectRules
from authsvc.core.oidc.keys import SEALING_INFO as OIDC_KEY_SEALING_INFO
from authsvc.core.oidc.keys import SigningKeys
from authsvc.core.oidc.logout import BackChannel
from authsvc.core.oidc.provider import Provider
from authsvc.core.pending_flows import EndedFlows
from authsvc.core.recovery_codes import RecoveryCodes
from authsvc.core.remember import RememberStore
from authsvc.core.sealing import Sealer
from authsvc.core.second_factors import PASSKEY, TOTP, SecondFactors
from authsvc.core.totp import SEALING_INFO as TOTP_SEALING_INFO
from authsvc.core.totp import TotpStore
from authsvc.core.sessions import SessionStore
from authsvc.core.sign_out import AccountSignOut
from authsvc.core.signing import serializer, timed_serializer
from authsvc.web.session_cookie import SessionInterface
from authsvc.core.throttle import Throttle
from authsvc.core.groups import GroupStore
from authsvc.core.verify_cache import VerifyCache

log = logging.getLogger("authsvc")


class StartupRefused(RuntimeError):
    """Production settings are unsound; ``problems`` says which and how to fix each."""

    def __init__(self, problems: list[config_mod.Problem]) -> None:
        self.problems = problems
        super().__init__("authsvc refuses to start:\n" + "\n".join(f"  - {p.message}" for p in problems))


@dataclass(frozen=True)
class CookieNames:
    """authsvc's cookie names and attributes. Only the session cookie is ever shared: with
    ``AUTHSVC_COOKIE_DOMAIN`` it carries that Domain (and so reaches every app under it, where the
    proxy strips it). Remember-me and device cookies are long-lived credentials the apps never need:
    they stay on the service's own host (``__Host-`` in production) whatever the domain setting."""

    session: str
    remember: str
    device: str
    secure: bool
    domain: str | None          # the session cookie's only
    legacy: tuple[str, ...] = ()  # remember/device names that earlier versions shared under ``domain``

    @classmethod
    def for_settings(cls, settings: config_mod.Settings) -> "CookieNames":
        # __Host- needs Secure, Path=/ and no Domain; a shared (SSO) cookie needs Domain: __Secure-.
        # Both prefixes need Secure, which development (plain http) cannot send.
        host_only = "__Host-" if settings.production else ""
        shared = settings.production and settings.cookie_domain
        session_prefix = "__Secure-" if shared else host_only
        legacy = ("__Secure-authsvc_remember", "__Secure-authsvc_device") if shared else ()
        return cls(f"{session_prefix}authsvc_session", f"{host_only}authsvc_remember", f"{host_only}authsvc_device",
                   secure=settings.production, domain=settings.cookie_domain, legacy=legacy)

    def attributes(self) -> dict:
        """Remember-me and device cookies: host-only (no Domain), whatever ``domain`` says."""
        return {"secure": self.secure, "httponly": True, "samesite": "Lax", "path": "/", "domain": None}


@dataclass(frozen=True)
class Services:
    """What the views and hooks need, built once by :func:`create_app` and never changed after.

    Each field is one narrow collaborator with its own interface (a store, a rule set, a signer); the
    login itself is :attr:`login`, a flow service the views only render. Time comes from the one wall
    clock handed to ``create_app`` (every store was built with it; tests hand in a clock they move)."""

    settings: config_mod.Settings
    policy: Policy
    clock: Callable[[], float]
    cookies: CookieNames
    redirect_rules: RedirectRules
    login_redirect: LoginRedirect
    password_rules: PasswordRules
    blocklist: Blocklist
    hasher: Hasher
    accounts: AccountStore
    sessions: SessionStore
    remember: RememberStore
    devices: DeviceCookies
    known_devices: DeviceRegistry
    sign_out: AccountSignOut  # sessions, remember-me tokens and known devices ended together
    throttle: Throttle
    audit: Audit
    login: LoginService
    engine: Engine
    metrics: Metrics
    # Second factors: which an account has (one source per kind), the TOTP secrets, the recovery
    # codes, the throttle of second-step codes (its own key space) and the relying-party id.
    factors: SecondFactors
    totp: TotpStore
    recovery_codes: RecoveryCodes
    code_throttle: Throttle
    rp_id: str
    # The OpenID Provider (authsvc.core.oidc): clients, codes, tokens, keys; its endpoints are
    # authsvc.web.views.oidc.
    oidc: Provider
    # None when the settings give no relying party (see authsvc.rules.passkeys.relying_party: e.g.
    # development on http://127.0.0.1, an IP address WebAuthn refuses): no passkey page or button.
    passkeys: PasskeyService | None = None
    # Each passkey ceremony's challenge is spent once, on any instance (authsvc.core.spent_once).
    passkey_challenges: SpentOnce | None = None
    # Groups for access rules (the rules themselves are policy.access, read once with the policy).
    groups: GroupStore | None = None
    # The OpenID back-channel logout sender (authsvc.core.oidc.logout): told of every ended session.
    backchannel: BackChannel | None = None


def _password_rules(policy: Policy) -> PasswordRules:
    """Even development cannot run with limits the password policy itself rejects."""
    try:
        return PasswordRules(policy.passwords.min_length, policy.passwords.max_length, policy.passwords.context_words)
    except ValueError as exc:
        raise StartupRefused([config_mod.Problem("error", "passwords", f"policy passwords: {exc}")]) from None


def create_app(settings: config_mod.Settings | None = None, *, clock: Callable[[], float] = time.time,
               monotonic: Callable[[], float] = time.monotonic) -> Flask:
    """``clock`` is the wall clock every store, the throttle and the audit log read (Unix seconds);
    ``monotonic`` times what must not move with a wall-clock step (the verify cache's entries)."""
    settings = settings or config_mod.from_env()
    logging_setup.configure(settings.log_destination)
    errors = [p for p in config_mod.audit(settings) if p.severity == "error"]
    if errors and settings.production:
        # Setting names only: a refused value may be a (weak) secret.
        Audit(context=dict, clock=clock).emit("config_refused", settings=",".join(sorted({p.setting for p in errors})))
        raise StartupRefused(errors)
    policy = settings.policy

    app = Flask(__name__, instance_path=settings.instance_path, instance_relative_config=False)
    if settings.production:
        # Flask reads FLASK_DEBUG from the environment, and Flask-Talisman skips its https redirect
        # in debug mode: a leftover FLASK_DEBUG=1 would serve the sign-in over plain http.
        app.debug = False
    app.session_interface = SessionInterface()
    app.request_class = StrictRequest  # undecodable form bytes -> U+FFFD -> 400 (authsvc.web.forms.field)
    cookies = CookieNames.for_settings(settings)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        SESSION_COOKIE_NAME=cookies.session,
        SESSION_COOKIE_SECURE=cookies.secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_DOMAIN=cookies.domain or None,
        SESSION_COOKIE_PATH="/",
        PERMANENT_SESSION_LIFETIME=policy.sessions.absolute_lifetime_seconds,
        MAX_CONTENT_LENGTH=policy.limits.max_content_length,
        MAX_FORM_MEMORY_SIZE=policy.limits.max_content_length,
        MAX_FORM_PARTS=50,
        AUTHSVC_SETTINGS=settings,
    )
    if not settings.production:
        print("*** authsvc is running in DEVELOPMENT mode: cookies are not Secure, HTTPS is not enforced "
              "and a generated key is used. Never use this mode in production. ***", file=sys.stderr)

    engine = make_engine(settings.database_url)
    storage = make_storage(settings.ratelimit_storage_uri)
    metrics = Metrics()
    cache_seconds = policy.sessions.verify_cache_seconds
    verify_cache = VerifyCache(cache_seconds, clock=monotonic) if cache_seconds > 0 else None
    audit = Audit(context=_audit_context, clock=clock, sink=metrics.count_event)
    oidc_provider = Provider(issuer=settings.own_origin, policy=policy.oidc, engine=engine, clock=clock, audit=audit,
                             keys=SigningKeys(engine, Sealer(settings.secret_key, settings.secret_key_fallbacks,
                                                             OIDC_KEY_SEALING_INFO), clock, alg=policy.oidc.signing_alg,
                                              id_token_lifetime=policy.oidc.id_token_lifetime_seconds))
    backchannel = BackChannel(oidc_provider, audit)
    cache_changed = verify_cache.invalidate if verify_cache is not None else None

    def sessions_ended(session_ids: list[int]) -> None:
        """Whatever ends sessions tells this process's cache (other processes' entries expire,
        <= 1 s) and queues their back-channel logout (never blocks: authsvc.core.oidc.logout)."""
        if verify_cache is not None:
            verify_cache.invalidate()
        backchannel.sessions_ended(session_ids)

    hasher = Hasher(policy.argon2, metrics.argon2_seconds.observe,
                    in_progress=metrics.hashing_in_progress.track_inprogress)
    accounts = AccountStore(engine, clock, sessions_ended)
    devices = DeviceCookies(timed_serializer(settings.secret_key, settings.secret_key_fallbacks, "authsvc.device"),
                            policy.throttle.device_cookie_lifetime_days)
    known_devices = DeviceRegistry(engine, clock, policy.throttle.max_devices_per_account,
                                   policy.throttle.device_cookie_lifetime_days)
    throttle = Throttle(storage, policy.throttle, clock, prefix=settings.ratelimit_key_prefix)
    # Codes of the second step: the password's back-off shape, in a key space of their own, no argon2 limits.
    code_throttle = Throttle(storage, policy.throttle, clock, prefix=f"{settings.ratelimit_key_prefix}:2fa",
                             guards_argon2=False)
    totp = TotpStore(engine, Sealer(settings.secret_key, settings.secret_key_fallbacks, TOTP_SEALING_INFO), clock)
    recovery = RecoveryCodes(engine, clock)
    redirect_rules = config_mod.redirect_rules(settings)
    # One relying-party id for passkeys and the issuer authenticator apps show (config decides it:
    # the policy's mfa.rp_id, else the cookie domain, else the public URL's host); the rule checks
    # it against the public URL.
    rp_id = config_mod.relying_party_id(settings)
    party = relying_party(settings.public_url, rp_id=rp_id, public_suffixes=config_mod.PUBLIC_SUFFIXES).party
    passkey_store = PasskeyStore(engine, clock)
    passkey_service = None if party is None else PasskeyService(
        store=passkey_store, accounts=accounts, rp=party, audit=audit, known_devices=known_devices,
        device_cookies=devices)
    # Stored passkeys count as a factor whether or not these settings give a relying party: an
    # instance without one (no AUTHSVC_PUBLIC_URL, an IP address) still asks such an account for its
    # second step (a recovery code or the app), never the password alone.
    factors = SecondFactors({TOTP: totp, PASSKEY: passkey_store})
    sessions = SessionStore(engine, policy.sessions, clock, cache=verify_cache, on_sessions_ended=sessions_ended)
    remember = RememberStore(engine, policy.sessions, clock, serializer(
        settings.secret_key, settings.secret_key_fallbacks, "authsvc.remember"), on_sessions_ended=sessions_ended)
    services = Services(
        settings=settings, policy=policy, clock=clock, cookies=cookies,
        redirect_rules=redirect_rules,
        login_redirect=LoginRedirect(login_url(settings.public_url), redirect_rules, settings.trusted_proxies),
        password_rules=_password_rules(policy),
        blocklist=load_default_blocklist(),
        hasher=hasher,
        accounts=accounts,
        sessions=sessions,
        remember=remember,
        sign_out=AccountSignOut(accounts, sessions, remember, known_devices),
        devices=devices,
        known_devices=known_devices,
        throttle=throttle,
        audit=audit,
        login=LoginService(accounts=accounts, hasher=hasher, throttle=throttle, known_devices=known_devices,
                           device_cookies=devices, audit=audit,
                           max_username_length=policy.limits.username_max_length,
                           max_password_length=policy.passwords.max_length,
                           factors=factors, totp=totp, recovery=recovery, code_throttle=code_throttle,
                           mfa=policy.mfa, clock=clock,
                           ended_flows=EndedFlows(storage, settings.ratelimit_key_prefix, policy.mfa.pending_seconds)),
        engine=engine,
        metrics=metrics,
        passkeys=passkey_service,
        passkey_challenges=SpentOnce(storage, f"{settings.ratelimit_key_prefix}:passkey-challenge",
                                     CHALLENGE_SECONDS + 60),
        factors=factors,
        totp=totp,
        recovery_codes=recovery,
        code_throttle=code_throttle,
        rp_id=rp_id,
        groups=GroupStore(engine, clock, cache_changed),
        oidc=oidc_provider,
        backchannel=backchannel,
    )
    app.extensions["authsvc"] = services

    from authsvc.web import auth, crosssite, csrf, headers, limiter, errors as error_pages
    from authsvc.web.views import account, api, health, login, oidc, passkeys, verify

    for bp in (login.bp, account.bp, passkeys.bp, verify.bp, api.bp, health.bp, oidc.bp):
        app.register_blueprint(bp)
    oidc.init_app(app)  # Authlib's server and resource protector; its client endpoints skip the form checks
    metrics.init_app(app, services)  # first before_request hook but the Host check: times the others too
    auth.init_app(app)
    crosssite.init_app(app)  # before CSRF: a cross-site post is refused for what it is
    # After auth's hook, so a CSRF failure is logged with its request id.
    csrf.init_app(app, timed_serializer(settings.secret_key, settings.secret_key_fallbacks, csrf.SALT),
                  max_age=csrf.TIME_LIMIT_SECONDS)
    limiter.init_app(app, services)
    headers.init_app(app, settings, services.redirect_rules)
    error_pages.init_app(app)
    app.jinja_env.filters["datetimeformat"] = lambda ts: time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))
    app.before_request_funcs.setdefault(None, []).insert(0, error_pages.unusable_host)  # before every other hook
    # /auth/verify goes to its own WSGI app, which answers a live session at once (authsvc.web.views.verify).
    fast_verify = verify.mount(app, app.wsgi_app)  # after every hook
    app.wsgi_app = TrustedProxies(fast_verify, settings.trusted_proxies,  # type: ignore[method-assign]
                                     settings.trusted_proxy_networks)
    return app


def _audit_context() -> dict:
    from flask import g, has_request_context, request

    if not has_request_context():
        return {}
    return {"request_id": g.get("request_id"), "client_ip": request.remote_addr,
            "user_agent": (request.user_agent.string or "")[:256], "user_id": g.get("audit_user_id")}
