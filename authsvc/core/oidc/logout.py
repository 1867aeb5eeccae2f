"""Logout for the OpenID Provider: the ``id_token_hint`` of RP-initiated logout, and back-channel
logout delivery (OpenID Connect Back-Channel Logout 1.0). No Flask here.

Back-channel delivery, kept deliberately small. :meth:`BackChannel.sessions_ended` is the
``on_sessions_ended`` observer (every store that ends sessions calls it after its commit, with the
ids); it only appends the ids to an in-memory queue and returns: no database read, no network, no
signing on the user's request. One daemon thread per process (started on first use, started again
in a forked worker) then finds the clients to tell (:meth:`Provider.sessions_ended`), signs one
logout token per (client, session) and POSTs it, retrying with exponential backoff; every outcome
is audited (``oidc_backchannel_logout_sent`` / ``_failed`` / ``_dropped``), never the token.

What it does not promise (docs/oidc.md says so too): the queue lives in memory, so a process
killed with deliveries pending loses them (on a normal exit it waits up to ``EXIT_WAIT_SECONDS``);
one slow receiver delays the others (each attempt is bounded by ``timeout``); the queue is bounded
(``capacity``), and what does not fit is dropped and audited rather than blocking the user.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import heapq
import http.client
import itertools
import logging
import os
import secrets
import ssl
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import sqlalchemy as sa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from authsvc.core.audit import Audit
from authsvc.core.deadline import deadline
from authsvc.core.models import sessions
from authsvc.rules import oidc_logout as rules
from authsvc.rules.oidc_redirects import loopback_parts

log = logging.getLogger("authsvc")

EXIT_WAIT_SECONDS = 10.0
SEEN_MAX = 10000  # session ids remembered so a session reported twice is told about once
LOGOUT_TOKEN_LIFETIME = 120  # seconds; long enough for every retry, short enough to be useless later


# --- id_token_hint --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hint:
    """A verified ``id_token_hint``: who it was for, which session, which client."""

    sub: str
    sid: str | None
    client_id: str | None


def read_hint(raw: object, *, keys_jwks: dict, issuer: str, client_id: str | None, now: float,
              max_age: float) -> tuple[str, Hint | None]:
    """Verify an ``id_token_hint`` with our published keys (current and those retired less than an
    ID token's lifetime ago) and judge its claims (:func:`authsvc.rules.oidc_logout.hint_claims_verdict`).
    Only ES256 and RS256 are tried: ``none`` and HMAC (a public key as the secret) fail here."""
    if not isinstance(raw, str) or not raw or len(raw) > rules.MAX_HINT:
        return "malformed", None
    try:
        keyset = KeySet.import_key_set(keys_jwks)
        token = jwt.decode(raw, keyset, algorithms=list(rules.HINT_ALGORITHMS))
    except (JoseError, ValueError, TypeError, KeyError):
        return "bad_signature", None
    claims = token.claims if isinstance(token.claims, dict) else {}
    verdict = rules.hint_claims_verdict(dict(token.header), claims, issuer=issuer, client_id=client_id, now=now,
                                        max_age=max_age)
    if verdict != rules.OK:
        return verdict, None
    return rules.OK, Hint(claims["sub"], claims.get("sid"), client_id or rules.hint_client(claims))


# --- back-channel delivery -------------------------------------------------------------------------

def trust_context() -> ssl.SSLContext:
    """The system's trust store, or the bundle ``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE`` names (read
    at each delivery, so an operator's change needs no restart). Hostnames are checked."""
    bundle = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or None
    context = ssl.create_default_context(cafile=bundle)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def post_form(url: str, body: bytes, timeout: float) -> tuple[int | None, str]:
    """One POST, no redirects followed: ``(status, "")`` or ``(None, what went wrong)``. Plain http
    only to a loopback address (what registration allows, for a receiver on the same machine). The
    connection takes at most ``timeout``, the exchange after it at most twice that, however the
    receiver paces its answer."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    loopback = loopback_parts(url) is not None
    try:
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, parts.port, timeout=timeout, context=trust_context())
        elif parts.scheme == "http" and loopback:
            conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
        else:
            return None, "scheme_refused"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.connect()
            # A receiver dripping its answer must not hold the thread that delivers every client's logout.
            with deadline(conn.sock, 2 * timeout) as expired:
                conn.request("POST", path, body=body, headers={
                    "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "authsvc-backchannel-logout"})
                response = conn.getresponse()
                response.read(65536)
            return (None, "timeout") if expired.is_set() else (response.status, "")
        finally:
            conn.close()
    except ssl.SSLError:
        return None, "tls"
    except TimeoutError:
        return None, "timeout"
    except (OSError, http.client.HTTPException):
        return None, "connection"


@dataclass
class _Delivery:
    client_id: str
    session_id: int
    uri: str
    body: bytes
    attempt: int = 0


_senders: weakref.WeakSet = weakref.WeakSet()
_exit_hook = threading.Lock()
_exit_registered = False


def drain_all(timeout: float = EXIT_WAIT_SECONDS) -> None:
    """Wait (up to ``timeout`` each) for every started sender of this process to empty its queue:
    at exit, and at the end of a CLI command that ended sessions."""
    for sender in list(_senders):
        sender.drain(timeout)


class BackChannel:
    """The sender. ``post`` (a :func:`post_form`) and the timings are handed in for tests."""

    def __init__(self, provider, audit: Audit, *, attempts: int = 4, backoff: float = 1.0, timeout: float = 5.0,
                 capacity: int = 1000, post: Callable[[str, bytes, float], tuple[int | None, str]] = post_form,
                 monotonic: Callable[[], float] | None = None) -> None:
        import time

        self.provider = provider
        self.audit = audit
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.capacity = capacity
        self.post = post
        self.monotonic = monotonic or time.monotonic
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._batches: list[list[int]] = []
        self._heap: list[tuple[float, int, _Delivery]] = []
        self._seq = itertools.count()
        self._busy = 0
        self._thread: threading.Thread | None = None
        self._seen: OrderedDict[int, None] = OrderedDict()  # sessions already queued (disable, then revoke)

    # --- the request side: cheap, never blocks ---

    def sessions_ended(self, session_ids) -> None:
        ids = [int(i) for i in session_ids or ()]
        if not ids:
            return
        if self._pid != os.getpid():  # a forked worker: the parent's thread and queue are not ours
            self._reset()
        with self._cond:
            ids = [i for i in dict.fromkeys(ids) if i not in self._seen]
            if not ids:
                return
            for i in ids:
                self._seen[i] = None
            while len(self._seen) > SEEN_MAX:
                self._seen.popitem(last=False)
            if len(self._batches) + len(self._heap) >= self.capacity:
                dropped = True
            else:
                dropped = False
                self._batches.append(ids)
                self._start()
                self._cond.notify()
        if dropped:
            self.audit.emit("oidc_backchannel_logout_dropped", sessions=len(ids), reason="queue_full")

    def _start(self) -> None:
        global _exit_registered
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="authsvc-backchannel-logout", daemon=True)
        self._thread.start()
        _senders.add(self)
        with _exit_hook:
            if not _exit_registered:
                atexit.register(drain_all)
                _exit_registered = True

    def drain(self, timeout: float) -> bool:
        """True once nothing is queued or being sent (False after ``timeout`` seconds)."""
        end = self.monotonic() + timeout
        with self._cond:
            while self._batches or self._heap or self._busy:
                left = end - self.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # --- the thread ---

    def _next(self):
        with self._cond:
            while True:
                if self._batches:
                    self._busy += 1
                    return self._batches.pop(0)
                if self._heap:
                    wait = self._heap[0][0] - self.monotonic()
                    if wait <= 0:
                        self._busy += 1
                        return heapq.heappop(self._heap)[2]
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while True:
            item = self._next()
            try:
                if isinstance(item, list):
                    self._resolve(item)
                else:
                    self._send(item)
            except Exception:  # the thread must survive; the event says what was lost
                log.exception("back-channel logout: unexpected error")
                self.audit.emit("oidc_backchannel_logout_failed", reason="internal",
                                client_id=getattr(item, "client_id", None))
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _queue(self, delivery: _Delivery, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (self.monotonic() + delay, next(self._seq), delivery))
            self._cond.notify_all()

    def _resolve(self, session_ids: list[int]) -> None:
        """Which clients to tell about these sessions, each with its signed logout token."""
        provider = self.provider
        pairs = provider.sessions_ended(session_ids)
        if not pairs:
            return
        with provider.engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(sa.select(sessions.c.id, sessions.c.user_id, sid_source())
                                                  .where(sessions.c.id.in_({s for _, s in pairs})))}
        for client_id, session_id in pairs:
            client = provider.clients.get(client_id)
            row = rows.get(session_id)
            if client is None or not client.backchannel_logout_uri or row is None:
                continue
            token = self.logout_token(client_id, provider.subjects.of(row.user_id), session_sid(row.sid_source))
            self._queue(_Delivery(client_id, session_id, client.backchannel_logout_uri,
                                  urlencode({"logout_token": token}).encode("ascii")), 0)

    def logout_token(self, client_id: str, sub: str, sid: str) -> str:
        key = self.provider.keys.current()
        claims = rules.logout_token_claims(issuer=self.provider.issuer, client_id=client_id, sub=sub, sid=sid,
                                           now=self.provider.clock(), lifetime=LOGOUT_TOKEN_LIFETIME,
                                           jti=secrets.token_urlsafe(24))
        private = (ECKey if key.alg == "ES256" else RSAKey).import_key(key.private_key)
        return jwt.encode({"alg": key.alg, "kid": key.kid, "typ": "logout+jwt"}, claims, private,
                          algorithms=[key.alg])

    def _send(self, delivery: _Delivery) -> None:
        delivery.attempt += 1
        status, problem = self.post(delivery.uri, delivery.body, self.timeout)
        verdict = rules.delivery_verdict(status)
        if verdict == rules.DELIVERED:
            self.audit.emit("oidc_backchannel_logout_sent", client_id=delivery.client_id,
                            session_id=delivery.session_id, attempts=delivery.attempt, status=status)
            return
        if verdict == rules.RETRY and delivery.attempt < self.attempts:
            self._queue(delivery, rules.backoff_seconds(delivery.attempt, self.backoff))
            return
        self.audit.emit("oidc_backchannel_logout_failed", client_id=delivery.client_id,
                        session_id=delivery.session_id, attempts=delivery.attempt,
                        reason=problem or f"http_{status}", status=status)


def sid_source():
    """The column a session's ``sid`` is derived from: its first token's digest, kept in ``sid_hash``
    once a step-up gave it a new token (:meth:`authsvc.core.sessions.SessionStore.reauthenticated`),
    else ``token_hash``."""
    return sa.func.coalesce(sessions.c.sid_hash, sessions.c.token_hash).label("sid_source")


def session_sid(token_hash: bytes) -> str:
    """The ``sid`` claim: stable for the session, opaque, not its row id, derived from the stored
    digest of its first token (itself one-way, :func:`sid_source`), so neither a key rotation nor
    a step-up's new token changes it."""
    return base64.urlsafe_b64encode(hashlib.sha256(b"authsvc.oidc.sid\0" + token_hash).digest()[:18]).decode()
