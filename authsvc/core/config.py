"""Configuration: read the environment once into a frozen :class:`Settings`, and judge it.

Every ``AUTHSVC_*`` variable is read here and nowhere else. :func:`audit` lists what is unsound for
production as :class:`Problem` lines that name the setting and the fix; the app factory and
``authsvc serve`` refuse to start on any error, and ``authsvc check`` prints them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from authsvc.rules import proxy_networks, secretkeys
from authsvc.core.filemodes import make_private_folder
from authsvc.core.policy import Policy, PolicyError, load_policy
from authsvc.rules.passkeys import relying_party, rp_id_problem
from authsvc.rules.redirects import AllowedApp, RedirectRules, build_rules, parse_origin

PRODUCTION = "production"
DEVELOPMENT = "development"

# argon2id floors from the OWASP Password Storage Cheat Sheet / ASVS 5.0 appendix C: t -> min KiB.
ARGON2_MEMORY_FLOOR_KIB = {1: 47104, 2: 19456, 3: 12288}

# Bounds outside which a policy value switches its protection off (each an error in production).
MIN_FAILURE_WINDOW_SECONDS = 60             # the back-off counts failures in this window
MIN_FAILURE_MEMORY_SECONDS = 86400          # the lock-out after max_consecutive_failures lasts this
MAX_REMEMBER_GRACE_SECONDS = 60             # a replayed remember-me cookie is theft after this
MAX_QUEUE_TIMEOUT_SECONDS = 60              # a request thread waits this long for an argon2 slot
MAX_CONTENT_LENGTH_CEILING = 1024 * 1024    # no form or token request of authsvc's needs more
USERNAME_COLUMN_LENGTH = 64                 # models.users.username_key: String(64)

# Credentials nobody should run a database with (ASVS 13.2.3).
_DEFAULT_DB_PASSWORDS = {"postgres", "password", "admin", "root", "changeme", "secret", "test", "example"}

# Public suffixes a cookie domain (or a passkey relying-party id) must never be. Not the full Public
# Suffix List (that needs a download); the checks also refuse any single-label domain and these
# common multi-label ones.
PUBLIC_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "com.au", "net.au", "org.au", "co.jp", "ne.jp", "co.nz",
    "com.br", "com.cn", "com.mx", "co.in", "co.za", "com.tr", "com.sg", "github.io", "gitlab.io",
    "herokuapp.com", "netlify.app", "vercel.app", "pages.dev", "workers.dev", "appspot.com",
    "azurewebsites.net", "cloudfront.net", "blogspot.com", "firebaseapp.com", "web.app",
    "s3.amazonaws.com", "compute.amazonaws.com", "fly.dev", "onrender.com", "ngrok.io", "ngrok.app",
})

DEFAULT_SYSLOG_SOCKET = "/dev/log"


def parse_destination(value: str) -> tuple[str, str | None]:
    """``AUTHSVC_LOG`` as ``(kind, target)``: ``("stdout", None)``, ``("file", path)`` or
    ``("syslog", socket path)``. Raises ValueError saying what is accepted."""
    raw = (value or "").strip()
    if raw in ("", "stdout"):
        return "stdout", None
    if raw == "syslog":
        return "syslog", DEFAULT_SYSLOG_SOCKET
    kind, sep, target = raw.partition(":")
    if sep and kind in ("file", "syslog") and target.startswith("/"):
        return kind, target
    raise ValueError(f"{raw!r} is not a log destination; use stdout, file:/absolute/path, syslog or "
                     "syslog:/path/to/socket")


class ConfigError(ValueError):
    """The environment cannot be read into settings; the message names the variable."""


@dataclass(frozen=True)
class Problem:
    severity: str   # "error": refuse to start; "warning": `authsvc check` fails; "note": informational
    setting: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


@dataclass(frozen=True)
class Settings:
    env: str
    # Secrets (and URLs that may carry a password) stay out of repr(): a Settings in a traceback
    # or a log line must not give them away.
    secret_key: str = field(repr=False)
    secret_key_fallbacks: tuple[str, ...] = field(repr=False)
    secret_source: str                   # the variable or file the key came from (never the key)
    database_url: str = field(repr=False)
    ratelimit_storage_uri: str = field(repr=False)
    policy: Policy
    redirect_allowed_origins: tuple[str, ...]
    trusted_proxies: int
    instance_path: str
    public_url: str | None = None
    cookie_domain: str | None = None
    metrics_token: str | None = field(repr=False, default=None)
    log_destination: str = "stdout"
    key_file: str | None = None
    ratelimit_key_prefix: str = "authsvc"   # lets several deployments (or tests) share one Redis
    # TCP peers whose forwarding headers count (with trusted_proxies > 0); nobody else's do.
    trusted_proxy_networks: tuple[proxy_networks.Network, ...] = field(
        default_factory=lambda: proxy_networks.parse_networks(proxy_networks.DEFAULT_NETWORKS))

    @property
    def production(self) -> bool:
        return self.env == PRODUCTION

    @property
    def own_origin(self) -> str:
        if self.public_url:
            return self.public_url
        return "https://authsvc.invalid" if self.production else "http://127.0.0.1:8000"


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more")
    return value


def _key_prefix(environ: Mapping[str, str]) -> str:
    raw = environ.get("AUTHSVC_RATELIMIT_KEY_PREFIX", "").strip() or "authsvc"
    if len(raw) > 64 or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in raw):
        raise ConfigError(f"AUTHSVC_RATELIMIT_KEY_PREFIX={raw!r}: use up to 64 letters, digits, '-', '_' or '.'")
    return raw


def _proxy_networks(environ: Mapping[str, str]) -> tuple[proxy_networks.Network, ...]:
    # Unset means the default; set but blank is refused, not read as "trust nobody" or the default.
    raw = environ.get("AUTHSVC_TRUSTED_PROXY_NETWORKS")
    try:
        return proxy_networks.parse_networks(proxy_networks.DEFAULT_NETWORKS if raw is None else raw)
    except ValueError as exc:
        raise ConfigError(f"AUTHSVC_TRUSTED_PROXY_NETWORKS: {exc}") from None


def _log_destination(environ: Mapping[str, str]) -> str:
    value = environ.get("AUTHSVC_LOG") or "stdout"
    try:
        parse_destination(value)
    except ValueError as exc:
        raise ConfigError(f"AUTHSVC_LOG: {exc}") from None
    return value


def _dev_secret(instance: Path) -> str:
    """Development only: a strong key made once and kept in the instance folder, mode 0600."""
    path = instance / "secret_key"
    if not path.exists():
        make_private_folder(str(instance))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secretkeys.generate_secret())
    return secretkeys.read_key_file(str(path))


def default_instance_path() -> str:
    return os.environ.get("AUTHSVC_INSTANCE_PATH") or str(Path.cwd() / "instance")


def from_env(environ: Mapping[str, str] | None = None, *, instance_path: str | None = None) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``). Raises :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    env = environ.get("AUTHSVC_ENV", PRODUCTION).strip().lower() or PRODUCTION
    if env not in (PRODUCTION, DEVELOPMENT):
        raise ConfigError(f"AUTHSVC_ENV={env!r}: use 'production' (the default) or 'development'")
    instance = Path(instance_path or environ.get("AUTHSVC_INSTANCE_PATH") or Path.cwd() / "instance")

    key_file = environ.get("AUTHSVC_SECRET_KEY_FILE") or None
    if environ.get("AUTHSVC_SECRET_KEY") and key_file:
        raise ConfigError("set AUTHSVC_SECRET_KEY or AUTHSVC_SECRET_KEY_FILE, not both")
    if key_file:
        try:
            secret, source = secretkeys.read_key_file(key_file), "AUTHSVC_SECRET_KEY_FILE"
        except OSError as exc:
            raise ConfigError(f"AUTHSVC_SECRET_KEY_FILE={key_file}: cannot read it ({exc.strerror})") from None
    elif environ.get("AUTHSVC_SECRET_KEY"):
        secret, source = environ["AUTHSVC_SECRET_KEY"], "AUTHSVC_SECRET_KEY"
    elif env == DEVELOPMENT:
        secret, source = _dev_secret(instance), f"{instance}/secret_key"
    else:
        secret, source = "", "AUTHSVC_SECRET_KEY"
    fallbacks = tuple(k.strip() for k in environ.get("AUTHSVC_SECRET_KEY_FALLBACKS", "").split(",") if k.strip())

    try:
        policy = load_policy(environ.get("AUTHSVC_POLICY") or None)
    except PolicyError as exc:
        raise ConfigError(f"AUTHSVC_POLICY: {exc}") from None

    origins_env = environ.get("AUTHSVC_REDIRECT_ALLOWED_ORIGINS")
    raw_origins = [o.strip() for o in origins_env.split(",") if o.strip()] if origins_env is not None \
        else list(policy.redirects.allowed_origins)
    try:
        origins = tuple(parse_origin(o) for o in raw_origins)
    except ValueError as exc:
        name = "AUTHSVC_REDIRECT_ALLOWED_ORIGINS" if origins_env is not None else "redirects.allowed_origins"
        raise ConfigError(f"{name}: {exc}") from None

    public_url = environ.get("AUTHSVC_PUBLIC_URL") or None
    if public_url:
        try:
            public_url = parse_origin(public_url)
        except ValueError as exc:
            raise ConfigError(f"AUTHSVC_PUBLIC_URL: {exc}") from None

    cookie_domain = (environ.get("AUTHSVC_COOKIE_DOMAIN") or "").strip().lower() or None
    database_url = environ.get("AUTHSVC_DATABASE_URL") or f"sqlite:///{instance / 'authsvc.db'}"
    try:
        make_url(database_url)
    except (ValueError, ArgumentError):  # the value may hold a password: never in the message
        raise ConfigError("AUTHSVC_DATABASE_URL cannot be read as a database URL (write "
                          "dialect+driver://user:password@host:port/database, the port a number, or "
                          "sqlite:////absolute/path.db; the value is not shown, it may hold a password)") from None
    settings = Settings(
        env=env,
        secret_key=secret,
        secret_key_fallbacks=fallbacks,
        secret_source=source,
        database_url=database_url,
        ratelimit_storage_uri=environ.get("AUTHSVC_RATELIMIT_STORAGE_URI") or "memory://",
        ratelimit_key_prefix=_key_prefix(environ),
        policy=policy,
        redirect_allowed_origins=origins,
        trusted_proxies=_int_env(environ, "AUTHSVC_TRUSTED_PROXIES", 0),
        trusted_proxy_networks=_proxy_networks(environ),
        instance_path=str(instance),
        public_url=public_url,
        cookie_domain=cookie_domain,
        metrics_token=environ.get("AUTHSVC_METRICS_TOKEN") or None,
        log_destination=_log_destination(environ),
        key_file=key_file,
    )
    redirect_rules(settings)  # what the app builds at start-up: refused here, so `check` says so too
    return settings


def redirect_rules(settings: Settings) -> RedirectRules:
    """The redirect rules the app validates every ``next`` with: the allowed origins, the policy's
    ``[[redirects.apps]]`` and ``redirects.default``. Raises :class:`ConfigError` naming the setting."""
    apps = [AllowedApp(origin) for origin in settings.redirect_allowed_origins]
    apps += [AllowedApp(a.origin, a.path_prefix, a.name) for a in settings.policy.redirects.apps]
    try:
        build_rules(settings.own_origin, apps, max_length=settings.policy.redirects.max_length)
    except ValueError as exc:
        raise ConfigError(f"AUTHSVC_POLICY: policy redirects.apps: {exc}") from None
    try:
        return build_rules(settings.own_origin, apps, default=settings.policy.redirects.default,
                           max_length=settings.policy.redirects.max_length)
    except ValueError as exc:
        raise ConfigError(f"AUTHSVC_POLICY: policy redirects.default: {exc}") from None


# --- the production audit -------------------------------------------------------------------

def audit(settings: Settings) -> list[Problem]:
    """Everything unsound about ``settings`` for production, each with its fix.

    In development only the problems that would make the service unsafe even on a laptop are
    errors (none today); everything is still listed so `authsvc check` shows what production needs.
    """
    problems: list[Problem] = []
    problems += _secret_problems(settings)
    problems += _policy_problems(settings.policy)
    problems += _deployment_problems(settings)
    if not settings.production:
        problems = [Problem("warning" if p.severity == "error" else p.severity, p.setting, p.message)
                    for p in problems]
    return problems


def _secret_problems(s: Settings) -> list[Problem]:
    out = [Problem("error", s.secret_source, m)
           for m in secretkeys.secret_problems(s.secret_key, setting=s.secret_source)]
    if s.key_file:
        out += [Problem("error", "AUTHSVC_SECRET_KEY_FILE", m)
                for m in secretkeys.key_file_problems(s.key_file)]
    for i, fallback in enumerate(s.secret_key_fallbacks):
        out += [Problem("error", "AUTHSVC_SECRET_KEY_FALLBACKS", m) for m in
                secretkeys.secret_problems(fallback, setting=f"AUTHSVC_SECRET_KEY_FALLBACKS[{i}]")]
        if fallback == s.secret_key:
            out.append(Problem("error", "AUTHSVC_SECRET_KEY_FALLBACKS",
                               f"AUTHSVC_SECRET_KEY_FALLBACKS[{i}] repeats the current key; list only older keys."))
    return out


def _policy_problems(p: Policy) -> list[Problem]:
    out: list[Problem] = []

    def err(key: str, msg: str) -> None:
        out.append(Problem("error", key, msg))

    def warn(key: str, msg: str) -> None:
        out.append(Problem("warning", key, msg))

    a = p.argon2
    floor = ARGON2_MEMORY_FLOOR_KIB.get(min(a.time_cost, 3), 0) if a.time_cost >= 1 else None
    if floor is None or a.memory_cost_kib < floor:
        err("argon2", f"policy argon2 time_cost={a.time_cost}, memory_cost_kib={a.memory_cost_kib} is below the "
                      "OWASP/ASVS floor (t=1: 47104, t=2: 19456, t>=3: 12288 KiB). Fix: raise memory_cost_kib.")
    if a.parallelism < 1 or a.hash_len < 32 or a.salt_len < 16:
        err("argon2", "policy argon2 needs parallelism >= 1, hash_len >= 32 and salt_len >= 16.")
    if a.max_concurrent < 1:
        err("argon2.max_concurrent", "policy argon2.max_concurrent must be at least 1.")
    if not 1 <= a.anonymous_max_concurrent <= max(1, a.max_concurrent):
        err("argon2.anonymous_max_concurrent", "policy argon2.anonymous_max_concurrent must be between 1 and "
                                               "max_concurrent. Fix: set it to max_concurrent - 1 (at least 1).")
    elif a.max_concurrent > 1 and a.anonymous_max_concurrent == a.max_concurrent:
        warn("argon2.anonymous_max_concurrent", "policy argon2.anonymous_max_concurrent equals max_concurrent: a "
                                                "login flood can take every argon2 slot from known devices. Fix: "
                                                "set it to max_concurrent - 1.")
    if a.queue_timeout_seconds > MAX_QUEUE_TIMEOUT_SECONDS:
        err("argon2.queue_timeout_seconds", f"policy argon2.queue_timeout_seconds={a.queue_timeout_seconds:g}: "
            f"a login may wait at most {MAX_QUEUE_TIMEOUT_SECONDS} s for an argon2 slot, or a flood holds every "
            "server thread. Fix: set 3.")
    if a.anonymous_queue < 0:
        err("argon2.anonymous_queue", "policy argon2.anonymous_queue must be 0 or more.")
    if not 0 <= a.request_nice <= 19:
        err("argon2.request_nice", "policy argon2.request_nice must be between 0 and 19.")
    if not 0 <= a.anonymous_nice <= 19:
        err("argon2.anonymous_nice", "policy argon2.anonymous_nice must be between 0 and 19.")
    elif a.anonymous_nice == 0:
        warn("argon2.anonymous_nice", "policy argon2.anonymous_nice = 0: under a login flood, known devices' "
                                      "logins get no more CPU than the attacker's. Fix: set 10.")
    pw = p.passwords
    if pw.min_length < 15:
        err("passwords.min_length", f"policy passwords.min_length={pw.min_length}; NIST SP 800-63B rev. 4 requires "
                                    "at least 15 for password-only login. Fix: set 15 or more.")
    if pw.max_length < 64 or pw.max_length < pw.min_length:
        err("passwords.max_length", f"policy passwords.max_length={pw.max_length}; at least 64 must be accepted.")
    se = p.sessions
    if se.idle_timeout_seconds < 1 or se.absolute_lifetime_seconds < 1:
        err("sessions", "policy sessions timeouts must be positive.")
    if se.idle_timeout_seconds > se.absolute_lifetime_seconds:
        err("sessions.idle_timeout_seconds", "policy sessions.idle_timeout_seconds exceeds absolute_lifetime_seconds.")
    if se.absolute_lifetime_seconds > 86400:
        warn("sessions.absolute_lifetime_seconds", f"policy sessions.absolute_lifetime_seconds="
             f"{se.absolute_lifetime_seconds} is over NIST's 24 hours for AAL2.")
    if se.idle_timeout_seconds > 3600:
        warn("sessions.idle_timeout_seconds", f"policy sessions.idle_timeout_seconds={se.idle_timeout_seconds} is "
             "over NIST's 1 hour for AAL2.")
    if not 1 <= se.remember_lifetime_days <= 30:
        err("sessions.remember_lifetime_days", f"policy sessions.remember_lifetime_days={se.remember_lifetime_days}; "
            "use 1 to 30 (NIST SP 800-63B overall reauthentication limit).")
    if se.max_sessions_per_user < 1:
        err("sessions.max_sessions_per_user", f"policy sessions.max_sessions_per_user={se.max_sessions_per_user}: "
            "0 lifts the cap on live sessions per account (ASVS 7.1.2). Fix: set 20.")
    if se.remember_rotation_grace_seconds > MAX_REMEMBER_GRACE_SECONDS:
        err("sessions.remember_rotation_grace_seconds", f"policy sessions.remember_rotation_grace_seconds="
            f"{se.remember_rotation_grace_seconds}: a stolen remember-me cookie replayed within it is taken for "
            f"two tabs racing, not theft; at most {MAX_REMEMBER_GRACE_SECONDS} s. Fix: set 5.")
    if se.verify_cache_seconds > 1:
        err("sessions.verify_cache_seconds", "policy sessions.verify_cache_seconds must be at most 1 so revocation "
            "reaches every instance within one second.")
    if se.touch_interval_seconds > se.idle_timeout_seconds // 2:
        err("sessions.touch_interval_seconds", "policy sessions.touch_interval_seconds must be at most half the idle timeout.")
    t = p.throttle
    if not t.per_client:
        warn("throttle.per_client", "policy throttle.per_client is empty: no per-client limit on POST /login.")
    if not t.per_client_known_device:
        warn("throttle.per_client_known_device", "policy throttle.per_client_known_device is empty: known "
             "devices have no per-client limit, so one account's device cookies can run argon2 at will from "
             'one address. Fix: set ["30 per minute", "300 per hour"].')
    if not t.per_device:
        warn("throttle.per_device", "policy throttle.per_device is empty: a known device's cookie can run "
             'argon2 from any number of addresses at once. Fix: set ["10 per minute", "60 per hour"].')
    if not t.successes_per_account:
        warn("throttle.successes_per_account", "policy throttle.successes_per_account is empty: whoever has an "
             "account's password can run argon2 with it as fast as the global limit allows. "
             'Fix: set ["10 per minute", "60 per hour"].')
    if t.max_devices_per_account == 0:
        warn("throttle.max_devices_per_account", "policy throttle.max_devices_per_account = 0: no browser is "
             "ever a known device, so an attacker flooding an account also locks its owner out. Fix: set 10.")
    elif t.max_devices_per_account > 50:
        warn("throttle.max_devices_per_account", f"policy throttle.max_devices_per_account="
             f"{t.max_devices_per_account}: each known device has its own per_device budget, so one account "
             "holder can run that many times more argon2. Fix: 10 is plenty for one person.")
    if t.failures_before_backoff == 0 or t.failures_before_backoff > 20:
        warn("throttle.failures_before_backoff", f"policy throttle.failures_before_backoff={t.failures_before_backoff}; "
             "use 3 to 20.")
    if t.backoff_initial_seconds < 1 or t.backoff_max_seconds < t.backoff_initial_seconds:
        warn("throttle.backoff_initial_seconds", "policy throttle backoff is off or inverted; use initial >= 1 s "
             "and max >= initial.")
    if t.failure_window_seconds < MIN_FAILURE_WINDOW_SECONDS:
        err("throttle.failure_window_seconds", f"policy throttle.failure_window_seconds={t.failure_window_seconds}: "
            f"failures older than this are forgotten, so under {MIN_FAILURE_WINDOW_SECONDS} s the back-off hardly "
            "or never starts. Fix: set 900.")
    if t.consecutive_failure_memory_seconds < MIN_FAILURE_MEMORY_SECONDS:
        err("throttle.consecutive_failure_memory_seconds", f"policy throttle.consecutive_failure_memory_seconds="
            f"{t.consecutive_failure_memory_seconds}: the lock-out after max_consecutive_failures is forgotten "
            f"that soon; at least {MIN_FAILURE_MEMORY_SECONDS} (one day). Fix: set 2592000 (30 days).")
    if not 1 <= t.max_consecutive_failures <= 100:
        err("throttle.max_consecutive_failures", f"policy throttle.max_consecutive_failures="
            f"{t.max_consecutive_failures}; NIST SP 800-63B allows at most 100.")
    if t.storage_failure == "memory":
        warn("throttle.storage_failure", 'policy throttle.storage_failure="memory": when the shared storage fails, '
             "each process counts alone, multiplying the limits.")
    if p.headers.hsts_max_age_seconds < 31536000:
        err("headers.hsts_max_age_seconds", "policy headers.hsts_max_age_seconds must be at least 31536000 (one year).")
    if p.limits.username_max_length < 1 or p.limits.max_content_length < 4096:
        err("limits", "policy limits: username_max_length must be >= 1 and max_content_length >= 4096.")
    if p.limits.max_content_length > MAX_CONTENT_LENGTH_CEILING:
        err("limits.max_content_length", f"policy limits.max_content_length={p.limits.max_content_length}: every "
            f"request may send that much to be read and parsed; at most {MAX_CONTENT_LENGTH_CEILING} (1 MiB). "
            "Fix: set 65536.")
    if p.limits.username_max_length > USERNAME_COLUMN_LENGTH:
        err("limits.username_max_length", f"policy limits.username_max_length={p.limits.username_max_length}: "
            f"usernames that long are read and normalized before any limit, and the database holds at most "
            f"{USERNAME_COLUMN_LENGTH}. Fix: set 64.")
    m = p.mfa
    if m.pending_seconds < 30:
        err("mfa.pending_seconds", f"policy mfa.pending_seconds={m.pending_seconds}: nobody can open an "
            "authenticator app and type a code that fast. Fix: set 300.")
    elif m.pending_seconds > 600:
        warn("mfa.pending_seconds", f"policy mfa.pending_seconds={m.pending_seconds}: a sign-in that passed "
             "its password stays open for its second step longer than 10 minutes. Fix: set 300.")
    if m.step_up_seconds > 3600:
        warn("mfa.step_up_seconds", f"policy mfa.step_up_seconds={m.step_up_seconds}: a session left open for "
             "over an hour can still add or remove a factor without the password. Fix: set 300.")
    o = p.oidc
    if not 1 <= o.access_token_lifetime_seconds <= 3600:
        err("oidc.access_token_lifetime_seconds", f"policy oidc.access_token_lifetime_seconds="
            f"{o.access_token_lifetime_seconds}: a bearer access token must live between 1 s and one hour. Fix: set 600.")
    if not 1 <= o.id_token_lifetime_seconds <= 3600:
        err("oidc.id_token_lifetime_seconds", f"policy oidc.id_token_lifetime_seconds={o.id_token_lifetime_seconds}: "
            "an ID token must expire within one hour. Fix: set 600.")
    if not 1 <= o.code_lifetime_seconds <= 60:
        err("oidc.code_lifetime_seconds", f"policy oidc.code_lifetime_seconds={o.code_lifetime_seconds}: an "
            "authorization code must expire within 60 s (ASVS V10.4.3). Fix: set 60.")
    if not o.token_requests_per_client:
        err("oidc.token_requests_per_client", "policy oidc.token_requests_per_client is empty: POST /oauth/token "
            "has no limit, so a client secret can be guessed as fast as the server answers. "
            'Fix: set ["60 per minute", "1000 per hour"].')
    if o.refresh_token_lifetime_seconds > 30 * 86400:
        warn("oidc.refresh_token_lifetime_seconds", f"policy oidc.refresh_token_lifetime_seconds="
             f"{o.refresh_token_lifetime_seconds}: refresh tokens outlive 30 days. Fix: set 1209600 (14 days).")
    return out


def _deployment_problems(s: Settings) -> list[Problem]:
    out: list[Problem] = []
    for origin in s.redirect_allowed_origins + tuple(app.origin for app in s.policy.redirects.apps):
        if urlsplit(origin.strip()).scheme.lower() == "http":  # as parse_origin reads it: HTTP:// is http
            out.append(Problem("error", "AUTHSVC_REDIRECT_ALLOWED_ORIGINS",
                               f"redirect origin {origin} is http; users would be sent back unencrypted. Use https."))
    if s.public_url and s.public_url.startswith("http://"):
        out.append(Problem("error", "AUTHSVC_PUBLIC_URL", "AUTHSVC_PUBLIC_URL must be https in production."))
    if database_password(s.database_url).lower() in _DEFAULT_DB_PASSWORDS:
        out.append(Problem("error", "AUTHSVC_DATABASE_URL", "AUTHSVC_DATABASE_URL uses a default database "
                           "password. Fix: give the database role a generated password."))
    if s.cookie_domain:
        out += cookie_domain_problems(s.cookie_domain, s.public_url)
    if s.policy.mfa.rp_id:
        out += rp_id_problems(s.policy.mfa.rp_id, s.public_url)
    if s.metrics_token is not None:  # a bearer token is a secret: the same strength rules as the key
        out += [Problem("error", "AUTHSVC_METRICS_TOKEN", m)
                for m in secretkeys.secret_problems(s.metrics_token, setting="AUTHSVC_METRICS_TOKEN")]
        if s.metrics_token == s.secret_key:
            out.append(Problem("error", "AUTHSVC_METRICS_TOKEN", "AUTHSVC_METRICS_TOKEN repeats the secret key; "
                               "whoever scrapes metrics could sign cookies. Fix: a separate `authsvc gen-secret`."))
        elif s.metrics_token in s.secret_key_fallbacks:  # a fallback still verifies every signed cookie
            out.append(Problem("error", "AUTHSVC_METRICS_TOKEN", "AUTHSVC_METRICS_TOKEN repeats a key in "
                               "AUTHSVC_SECRET_KEY_FALLBACKS, which still verifies cookies: whoever scrapes metrics "
                               "could sign them. Fix: a separate `authsvc gen-secret`."))
    for network in s.trusted_proxy_networks if s.trusted_proxies else ():
        if proxy_networks.far_too_wide(network):  # an error: 0.0.0.0/0 lets anyone forge their address
            out.append(Problem("error", "AUTHSVC_TRUSTED_PROXY_NETWORKS", f"AUTHSVC_TRUSTED_PROXY_NETWORKS lists "
                               f"{network}, wider than a /{proxy_networks.REFUSED_PREFIX[network.version]}: any host "
                               "in it can forge client addresses (a fresh throttle bucket per attempt), the scheme "
                               "and request ids. Fix: list only the proxies' addresses."))
        elif proxy_networks.too_wide(network):
            out.append(Problem("warning", "AUTHSVC_TRUSTED_PROXY_NETWORKS", f"AUTHSVC_TRUSTED_PROXY_NETWORKS lists "
                               f"{network}, wider than a /{proxy_networks.WIDEST_PREFIX[network.version]}: any host in it "
                               "can forge client addresses and request ids. Fix: list only the proxies' addresses."))
    if counts_per_process(s.ratelimit_storage_uri):
        # A warning, not an error: one process (serve --workers 1, one instance) counts soundly, but
        # serve runs 2 workers by default, so check must not call the default sound for production.
        out.append(Problem("warning" if s.production else "note", "AUTHSVC_RATELIMIT_STORAGE_URI",
                           "AUTHSVC_RATELIMIT_STORAGE_URI=memory:// counts per process: with N workers (authsvc "
                           "serve runs 2 by default) or instances an attacker gets N times every rate limit and "
                           "lock-out. Fix: use redis://... shared by every process."))
    return out


def database_password(url: str) -> str:
    """The password the database driver will be given for ``url``: percent-decoded, from the user
    info or a ``password=`` query parameter (libpq takes either); "" when none, or when the URL
    cannot be read (:func:`from_env` refuses such a URL)."""
    try:
        parsed = make_url(url)
    except (ValueError, ArgumentError):
        return ""
    query = parsed.query.get("password", "")
    return str(parsed.password or (query if isinstance(query, str) else query[0] if query else ""))


def counts_per_process(storage_uri: str) -> bool:
    """Is ``storage_uri`` the ``limits`` in-memory storage, which each process keeps alone? By its
    scheme as ``limits`` reads it: ``MEMORY://``, `` memory://`` and ``memory:`` are memory too."""
    return urlsplit(storage_uri.strip()).scheme.lower() == "memory"


def serve_problems(settings: Settings, workers: int) -> list[Problem]:
    """What ``authsvc serve`` warns about before it starts ``workers`` processes in production:
    with ``memory://`` rate-limit storage each process counts alone, so every throttle figure (the
    per-client limits, an account's back-off, its lock-out after ``max_consecutive_failures``) is
    multiplied by the number of workers an attacker's requests spread over."""
    if not (settings.production and workers > 1 and counts_per_process(settings.ratelimit_storage_uri)):
        return []
    most = settings.policy.throttle.max_consecutive_failures
    return [Problem("warning", "AUTHSVC_RATELIMIT_STORAGE_URI",
                    f"AUTHSVC_RATELIMIT_STORAGE_URI=memory:// with {workers} workers: each worker counts alone, "
                    f"so an attacker gets up to {workers} times every throttle limit (an account locks after up "
                    f"to {most * workers} consecutive failures, not {most}). Fix: a Redis every worker shares "
                    "(AUTHSVC_RATELIMIT_STORAGE_URI=redis://...), or --workers 1.")]


def oidc_issuer_problems(settings: Settings, clients: int | None) -> list[Problem]:
    """The OpenID Provider's issuer is ``AUTHSVC_PUBLIC_URL``; without it (in production) every ID
    token and the discovery document would name the placeholder ``https://authsvc.invalid``.
    ``clients``: how many OIDC clients are registered (None when the database could not tell).
    An error once a client is registered, or when that is unknown (fail closed); a note before."""
    if settings.public_url or not settings.production:
        return []
    name = "AUTHSVC_PUBLIC_URL"
    fix = ("Fix: set AUTHSVC_PUBLIC_URL to the https origin browsers reach authsvc at "
           "(AUTHSVC_PUBLIC_URL=https://auth.example.com), then restart.")
    if clients == 0:
        return [Problem("note", name, f"AUTHSVC_PUBLIC_URL is not set: the OpenID Provider's discovery document "
                        f"names the placeholder issuer {settings.own_origin}. Set it before the first "
                        "`authsvc oidc client add`.")]
    registered = "OpenID Connect clients may be registered" if clients is None else \
        f"{clients} OpenID Connect client(s) are registered"
    return [Problem("error", name, f"AUTHSVC_PUBLIC_URL is not set, but {registered}: the OpenID Provider would "
                    f"sign ID tokens for the placeholder issuer {settings.own_origin}, which no relying party "
                    f"can verify against where authsvc really is. {fix}")]


def cookie_domain_problems(domain: str, public_url: str | None) -> list[Problem]:
    """A shared cookie domain must be a registrable domain that covers the service's own host."""
    bare = domain.lstrip(".")
    name = "AUTHSVC_COOKIE_DOMAIN"
    if not bare or "." not in bare or bare in PUBLIC_SUFFIXES or any(c in bare for c in "/:*@ "):
        return [Problem("error", name, f"AUTHSVC_COOKIE_DOMAIN={domain} is a public suffix or not a domain; every "
                        "site under it could read the session. Fix: use your own domain, e.g. .example.com.")]
    if not public_url:
        return [Problem("error", name, "AUTHSVC_COOKIE_DOMAIN needs AUTHSVC_PUBLIC_URL so the domain can be checked "
                        "against the service's own host.")]
    host = public_url.split("://", 1)[1].split(":", 1)[0].strip("[]")
    if host != bare and not host.endswith("." + bare):
        return [Problem("error", name, f"AUTHSVC_COOKIE_DOMAIN={domain} does not cover the service's host {host}; "
                        "browsers would drop the cookie.")]
    return []


def _host(origin: str) -> str:
    return urlsplit(origin).hostname or ""


def relying_party_id(settings: Settings) -> str:
    """The WebAuthn relying-party id (and the issuer authenticator apps show): ``mfa.rp_id`` when
    the policy sets one, else the cookie domain when single sign-on is on, else the public URL's
    host (``localhost`` in development without one)."""
    if settings.policy.mfa.rp_id:
        return settings.policy.mfa.rp_id.strip().lower().lstrip(".")
    if settings.cookie_domain:
        return settings.cookie_domain.lstrip(".")
    return _host(settings.own_origin)


def rp_id_problems(rp_id: str, public_url: str | None) -> list[Problem]:
    """Whether the policy's ``mfa.rp_id`` is one browsers accept for this service, decided by
    :func:`authsvc.rules.passkeys.relying_party` (what the app builds its passkeys from): the
    service's host or a domain above it, not a public suffix. Otherwise every passkey ceremony
    would fail, so start-up refuses it."""
    name = "mfa.rp_id"
    bare = rp_id.strip().lower().lstrip(".")
    if not public_url:
        return [Problem("error", name, "policy mfa.rp_id needs AUTHSVC_PUBLIC_URL so it can be checked against "
                        "the service's own host.")]
    own = rp_id_problem(bare, PUBLIC_SUFFIXES)
    reason = own or relying_party(public_url, rp_id=bare, public_suffixes=PUBLIC_SUFFIXES).reason
    if reason in ("ok", "not_secure", "bad_public_url"):
        return []  # the public URL's own problems are reported under its name
    if reason == "not_a_parent":
        return [Problem("error", name, f"policy mfa.rp_id={rp_id} does not cover the service's host "
                        f"{_host(public_url)}; browsers would refuse every passkey. Fix: leave it \"\" or use a "
                        "domain above the host.")]
    return [Problem("error", name, f"policy mfa.rp_id={rp_id!r} is not a domain ({reason.replace('_', ' ')}). "
                    "Fix: leave it \"\" (derived) or set the service's host or your own domain above it.")]
