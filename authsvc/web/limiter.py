"""Flask-Limiter: the per-client limits on POST /login (and POST /login/passkey), keyed by address
(IPv6 by /64).

Which limits count an attempt depends on whether it carries a device cookie signed for the account
named in the form (:func:`signed_device`; whether the account's registry still holds its id is asked
only of attempts the limits let through, by :class:`authsvc.core.login_flow.LoginService`, so a flood of
refusals costs no database read):

* not known: ``per_client``, per address (scope ``None``, the keys it always had);
* known: ``per_client_known_device``, per address *and* account, so an attacker behind the owner's
  address (NAT) can spend neither the owner's budget nor, with the anonymous limit, lock it out;
  and ``per_device``, per device id from any address, so one cookie cannot run argon2 from a
  thousand addresses at once.

The second step (a code, or a passkey, after the password) goes by the same rule, the device being
the one its password step used (:func:`second_step_device`, from the pending sign-in in the signed
session): until session 13 it had only the address's anonymous limit, so ten junk posts a minute
from behind the owner's NAT held every known device there out of its second step.

Known devices were exempt from every per-client limit until the review of December 2026 (finding 1):
an account holder with ten device cookies ran argon2 at will.

Counters live in ``AUTHSVC_RATELIMIT_STORAGE_URI`` (memory, or Redis shared by all instances) under
``AUTHSVC_RATELIMIT_KEY_PREFIX``. The address is ``request.remote_addr`` after
:mod:`authsvc.web.proxies` (never ``access_route``, which believes any client-sent X-Forwarded-For).
Rate-limit headers are off: a 429 must not say which limit fired. A sign-in refused before the view
runs (body too large, cross-site, two session cookies, CSRF) counts toward the anonymous per-client
limit too (:func:`count_refusal`). When the storage fails the request fails closed (503, see
:mod:`authsvc.web.errors`) unless the policy chose the in-memory fallback.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from flask import Flask, current_app, g, request, session
from flask_limiter import Limiter
from werkzeug.exceptions import HTTPException
from limits.errors import ConfigurationError
from limits.storage import MovingWindowSupport, Storage, storage_from_string

from authsvc.rules.clientip import client_key
from authsvc.core.config import ConfigError
from authsvc.core.devices import device_digest
from authsvc.core.login_flow import FlowState
from authsvc.web.forms import value_problem
from authsvc.rules.passwords import normalize_password
from authsvc.core.throttle import account_hash
from authsvc.rules.usernames import normalize_username

# A dead or black-holed Redis must cost a login a fraction of a second, not the OS connect timeout
# (minutes): with sync workers a hanging request is a worker lost.
REDIS_TIMEOUT_SECONDS = 1.0


# How often the in-memory storage sweeps expired keys (limits' own MemoryStorage: 10 ms after any write).
SWEEP_SECONDS = 1.0


class SweptMemoryStorage(Storage, MovingWindowSupport):
    """The ``memory://`` storage: per-process counters (the per-account throttle) and moving windows
    (Flask-Limiter), written against ``limits``' public storage interface (``Storage``,
    ``MovingWindowSupport``, registered by ``STORAGE_SCHEME``) with the semantics of its MemoryStorage.

    Why not limits' own: it starts a sweeper thread 10 ms after any write and each sweep visits every
    key, so a flood from ever new addresses (one key per address and limit, kept for an hour) makes
    each request pay a thread start and a scan that grows with the flood (docs/throttle.md). Here a
    write starts a sweep at most once per :data:`SWEEP_SECONDS`. Reads ignore expired entries, so
    sweeping less often only delays freeing memory. Wall time (``time.time``) as in ``limits``:
    Flask-Limiter turns window starts into reset times with it.
    """

    STORAGE_SCHEME = ["authsvc+memory"]  # noqa: RUF012 - read once by limits' scheme registry

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._expires: dict[str, float] = {}                      # counter key -> wall time it ends
        self._windows: dict[str, list[tuple[float, float]]] = {}  # key -> (taken at, ends at), newest first
        self._next_sweep = 0.0
        self._sweeper: threading.Thread | None = None

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def _schedule_sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep or (self._sweeper is not None and self._sweeper.is_alive()):
            return
        self._next_sweep = now + SWEEP_SECONDS
        self._sweeper = threading.Timer(0.0, self._sweep)
        self._sweeper.daemon = True
        self._sweeper.start()

    def _sweep(self) -> None:
        # Key by key, so a request waits for one key's check, never for the whole scan.
        for key in list(self._windows):
            with self._lock:
                now = time.time()
                kept = [entry for entry in self._windows.get(key, ()) if entry[1] > now]
                if kept:
                    self._windows[key] = kept
                else:
                    self._windows.pop(key, None)
        for key in list(self._expires):
            with self._lock:
                self._forget_if_expired(key, time.time())

    def _forget_if_expired(self, key: str, now: float) -> None:
        if self._expires.get(key, 0.0) <= now:
            self._counts.pop(key, None)
            self._expires.pop(key, None)

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        self._schedule_sweep()
        with self._lock:
            now = time.time()
            self._forget_if_expired(key, now)
            count = self._counts.get(key, 0) + amount
            self._counts[key] = count
            if count == amount:  # a new counter: its expiry runs from its first hit
                self._expires[key] = now + expiry
            return count

    def get(self, key: str) -> int:
        with self._lock:
            self._forget_if_expired(key, time.time())
            return self._counts.get(key, 0)

    def get_expiry(self, key: str) -> float:
        return self._expires.get(key, time.time())

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            count = max(len(self._counts), len(self._windows))
            self._counts.clear()
            self._expires.clear()
            self._windows.clear()
            return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)
            self._expires.pop(key, None)
            self._windows.pop(key, None)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        self._schedule_sweep()
        with self._lock:
            now = time.time()
            entries = self._windows.setdefault(key, [])
            # Full when the entry that would fall out of the window to make room is still inside it.
            if len(entries) > limit - amount and entries[limit - amount][0] >= now - expiry:
                return False
            entries[:0] = [(now, now + expiry)] * amount
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(When the oldest entry inside the window was taken, how many entries it holds)."""
        with self._lock:
            now = time.time()
            entries = self._windows.get(key)
            if not entries:
                return now, 0
            inside = sum(1 for taken, _ in entries if taken > now - expiry)
            return entries[inside - 1][0], inside


def storage_uri(uri: str) -> str:
    """The ``limits`` URI to open: ``memory://`` means :class:`SweptMemoryStorage`."""
    return "authsvc+memory://" if uri.split("://", 1)[0] == "memory" else uri


def make_storage(uri: str) -> Storage:
    """The storage behind ``AUTHSVC_RATELIMIT_STORAGE_URI``, as the per-account throttle uses it. A
    URI ``limits`` cannot open is a :class:`~authsvc.core.config.ConfigError` that names the setting
    and never the value: limits' own error quotes the whole URI, a Redis password with it, into the
    traceback a service manager keeps."""
    try:
        return storage_from_string(storage_uri(uri), **storage_options(uri))
    except (ConfigurationError, ValueError):
        raise ConfigError("AUTHSVC_RATELIMIT_STORAGE_URI is not a storage URI limits can open (its value is "
                          "not shown: it may hold a password); use memory://, redis://[:password@]host:port/db, "
                          "rediss://..., redis+sentinel://... or redis+cluster://...") from None


def storage_options(uri: str) -> dict:
    """Client options for a ``limits`` storage URI: short socket timeouts for every Redis form.
    Sentinel also reads from the master only: the throttle reads back counters it has just
    written, and a lagging replica would hand an attacker the attempts it has not seen yet."""
    timeouts = {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS}
    scheme = uri.split("://", 1)[0]
    if scheme in ("redis", "rediss", "redis+unix", "redis+cluster"):
        return timeouts
    if scheme == "redis+sentinel":
        return {**timeouts, "use_replicas": False, "sentinel_kwargs": dict(timeouts)}
    return {}


def _key() -> str:
    return client_key(request.remote_addr)


# Flask-Limiter scopes of the known-device limits, and the audit reason each gives a 429.
KNOWN_CLIENT_SCOPE = "known_device"
DEVICE_SCOPE = "device"
OIDC_CLIENT_SCOPE = "oidc_client"
REASONS = {KNOWN_CLIENT_SCOPE: "per_client_known_device", DEVICE_SCOPE: "per_device",
           OIDC_CLIENT_SCOPE: "oidc_token_per_client"}


@dataclass(frozen=True)
class KnownDevice:
    account: str     # authsvc.core.throttle.account_hash of the normalized username
    device_id: str


def signed_device() -> KnownDevice | None:
    """This login's device cookie, when it is validly signed for the account named in the form
    (decided once per request). What the per-client limits go by: only a successful sign-in to that
    account issues one, and it is worth nothing for any other account."""
    if "authsvc_signed_device" in g:
        return g.authsvc_signed_device
    svc = current_app.extensions["authsvc"]
    cookie = request.cookies.get(svc.cookies.device)
    signed = None
    if cookie and not refused_for_size(request.form, svc.policy):
        key = normalize_username(request.form["username"])
        device = svc.devices.device_for(cookie, key)
        if device is not None:
            signed = KnownDevice(account_hash(key), device)
    g.authsvc_signed_device = signed
    return signed


def refused_for_size(form, policy) -> bool:
    """Will POST /login refuse ``form`` with a 400 before any password check (a field missing,
    repeated, too long, not stream-safe, or a password too long once normalised)? Such a request is
    no login of a known device's owner, so it counts toward the per-client limit like any other.
    Normalises only what :func:`authsvc.web.forms.value_problem` let through: linear."""
    usernames, passwords = form.getlist("username"), form.getlist("password")
    if len(usernames) != 1 or len(passwords) != 1:
        return True
    if value_problem(usernames[0], policy.limits.username_max_length * 4) or \
            value_problem(passwords[0], policy.passwords.max_length * 4):
        return True
    return len(normalize_password(passwords[0])) > policy.passwords.max_length


def _known_client_key() -> str:
    known = known_device()
    return f"{_key()}|{known.account if known else '-'}"


def _oidc_client_key() -> str:
    """The budget a token request spends: its client's when the request authenticates as a
    confidential client (that client's secret, in HTTP Basic or the form), so the client's requests
    share one budget from every address and nobody else can spend it; else its address's. A request
    naming a client without its secret (a public client, a wrong secret, a body refused unread)
    costs that client nothing: a client id is no secret (it is in every authorization URL), and
    until the review of session 11 anyone could empty a client's budget by naming it."""
    named, secret = _presented_client_credentials()
    if named is not None and secret is not None:
        client = current_app.extensions["authsvc"].oidc.clients.get(named)  # None for a name over 64
        if client is not None and client.check_client_secret(secret):  # False for a public client
            return "oidc:" + named.encode("utf-8", "surrogateescape").hex()
    return client_key(request.remote_addr)


def _presented_client_credentials() -> tuple[str | None, str | None]:
    """The client id and secret a token request presents: HTTP Basic's (RFC 6749 2.3.1), else the
    form's ``client_id`` and ``client_secret``; (None, None) for a body that cannot be read."""
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return auth.username, auth.password
    try:
        return request.form.get("client_id"), request.form.get("client_secret")
    except HTTPException:  # a body refused for what it is (413, undecodable): its own 4xx follows
        return None, None


def _device_key() -> str:
    known = known_device()
    return f"dev:{device_digest(known.device_id).hex()[:32]}" if known else "-"


def _not_known() -> bool:
    return known_device() is None


def _known() -> bool:
    return known_device() is not None


# The signed session's key of a sign-in waiting for its second step (authsvc.web.views.login keeps
# it there), and the endpoints of that second step.
PENDING = "mfa_flow"
SECOND_STEP_ENDPOINTS = frozenset({"login.second_step_post", "passkeys.second_step_finish"})


def known_device() -> KnownDevice | None:
    """The known device the per-client limits of this request go by: the password form's signed
    device cookie (:func:`signed_device`), or for the second step its password step's device
    (:func:`second_step_device`)."""
    return second_step_device() if request.endpoint in SECOND_STEP_ENDPOINTS else signed_device()


def second_step_device() -> KnownDevice | None:
    """The known device of this browser's pending sign-in: the one its password step used, found in
    the device registry then (:class:`authsvc.core.login_flow.FlowState`, in the signed session, so
    only a browser that passed the password with that device holds it). Whether the flow still
    stands is the view's question; the limits only need whose budget a post spends."""
    state = FlowState.from_session(session.get(PENDING))
    if state is None or state.device is None:
        return None
    return KnownDevice(f"id:{state.account_id}", state.device)


def init_app(app: Flask, services) -> Limiter:
    policy = services.policy.throttle
    settings = services.settings
    limiter = Limiter(
        key_func=_key,
        app=app,
        storage_uri=storage_uri(settings.ratelimit_storage_uri),
        storage_options=storage_options(settings.ratelimit_storage_uri),
        strategy="moving-window",
        headers_enabled=False,
        swallow_errors=False,
        in_memory_fallback_enabled=policy.storage_failure == "memory",
        key_prefix=settings.ratelimit_key_prefix,
    )
    endpoint = "login.login_post"

    def by_device(view):
        """The anonymous per-client limit, or for a known device (:func:`known_device`) the
        known-device ones. Their scopes name no endpoint: a known device's password step and its
        second step spend one per-device budget (per address and account they count apart: the
        password form names the account by its name's hash, the pending flow by its id)."""
        if policy.per_client:
            view = limiter.limit(";".join(policy.per_client), methods=["POST"], exempt_when=_known)(view)
        if policy.per_client_known_device:
            view = limiter.limit(";".join(policy.per_client_known_device), methods=["POST"],
                                 key_func=_known_client_key, scope=KNOWN_CLIENT_SCOPE, exempt_when=_not_known)(view)
        if policy.per_device:
            view = limiter.limit(";".join(policy.per_device), methods=["POST"], key_func=_device_key,
                                 scope=DEVICE_SCOPE, exempt_when=_not_known)(view)
        return view

    # A second-step code is a guess at a secret, counted per account by the login service but also
    # here, so one address holding several accounts' passwords cannot spread its guesses over them;
    # the second step of a known device's sign-in goes by the known-device limits, as its password
    # step did. A passkey sign-in runs no argon2 and guesses no secret, but each try costs a
    # signature check and database reads: the anonymous per-client limit. The anonymous limit's
    # counts are each endpoint's own.
    for name in ({endpoint} | SECOND_STEP_ENDPOINTS) & app.view_functions.keys():
        app.view_functions[name] = by_device(app.view_functions[name])
    if policy.per_client and "passkeys.login_finish" in app.view_functions:
        app.view_functions["passkeys.login_finish"] = limiter.limit(";".join(policy.per_client), methods=["POST"])(
            app.view_functions["passkeys.login_finish"])
    if policy.per_client:
        counted = frozenset(e for e in (endpoint, "passkeys.login_finish", "login.second_step_post",
                                        "passkeys.second_step_finish") if e in app.view_functions)
        app.extensions[REFUSED] = (counted, limiter.limit(";".join(policy.per_client), methods=["POST"])(_refused))
    # The OpenID token endpoint (oidc.token_requests_per_client), per authenticated client, else per
    # address (_oidc_client_key): no address can hammer code and refresh-token guessing, one client
    # cannot starve the others, and naming a client spends nothing of its budget.
    oidc_endpoint = "oidc.token"
    oidc_limits = services.policy.oidc.token_requests_per_client
    if oidc_limits and oidc_endpoint in app.view_functions:
        app.view_functions[oidc_endpoint] = limiter.limit(
            ";".join(oidc_limits), methods=["POST"], key_func=_oidc_client_key, scope=OIDC_CLIENT_SCOPE)(
            app.view_functions[oidc_endpoint])
    app.extensions["authsvc_limiter"] = limiter
    return limiter


REFUSED = "authsvc_refused_before_view"


def _refused() -> None:
    """Nothing: calling it (wrapped in the per-client limit) is what counts a refusal."""


def count_refusal() -> None:
    """Count a POST to a per-client-limited sign-in endpoint refused before its view ran toward that
    endpoint's anonymous per-client limit; raises ``RateLimitExceeded`` once over. Its callers, each a
    refusal that happens before the view: a body too large (413, :mod:`authsvc.web.errors`), a
    cross-site post or two session cookies (403, 400, :mod:`authsvc.web.crosssite`), a CSRF failure
    (400, :mod:`authsvc.web.errors`; also what an undecodable or non-form body without the header
    token gets).

    Those checks run in ``before_request`` hooks, before the view and so before the limits wrapped
    around it: without this an address could send such sign-ins without end (an oversize or CSRF one
    read up to ``limits.max_content_length``) and never see a 429. The limit wraps a function that
    does nothing, so Flask-Limiter counts it under the request's endpoint, in the very bucket the
    view's own limit uses. It reads the method, the endpoint and the address, never the body. No
    known-device exemption: a request no browser form of this site sends is no owner's sign-in (as
    :func:`refused_for_size` decides for 400s). A refusal raised once the view's limit has counted
    the request must not call it (it would count twice)."""
    counted, count = current_app.extensions.get(REFUSED, (frozenset(), None))
    if count is not None and request.method == "POST" and request.endpoint in counted:
        count()


def breached(exc) -> str:
    """The audit reason of a Flask-Limiter 429: which per-client limit fired."""
    return REASONS.get(getattr(getattr(exc, "limit", None), "scope", None), "per_client")


def retry_after_seconds() -> int:
    """Seconds until the breached Flask-Limiter limit resets (for Retry-After)."""
    limiter = current_app.extensions.get("authsvc_limiter")
    current = getattr(limiter, "current_limit", None) if limiter else None
    if current is None:
        return 60
    # The window's own reset time: RequestLimit.reset_at adds a second and truncates.
    reset_at = float(current.window[0])
    return max(1, math.ceil(reset_at - time.time()))
