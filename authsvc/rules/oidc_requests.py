"""The decisions of an OpenID Connect authorization request, as pure functions of plain values:
which scopes were asked for (and whether this client may have them, at the authorization request
and at a refresh), whether a PKCE challenge and verifier are acceptable, whether the
browser's session may answer now or must sign in (again, or with a second factor), and whether the
user must be asked to consent.

Each returns a reason code (or a verdict and a value); the views map them to OAuth errors or pages.
The threat list is tests/security/test_oidc_request_rules.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_CLIENT_SCOPES",
    "LEGACY_CLIENT_SCOPES",
    "SUPPORTED_SCOPES",
    "challenge_verdict",
    "consent_decision",
    "parse_max_age",
    "parse_prompt",
    "parse_scope",
    "pkce_matches",
    "refresh_scope",
    "s256",
    "session_decision",
    "signed_out_way_back",
    "verifier_verdict",
]

OK = "ok"

# --- scopes -----------------------------------------------------------------------------------------

# openid (required), profile (preferred_username), groups (the user's group names), offline_access
# (a refresh token). This order is the order of ScopeDecision.scopes and of the consent page.
SUPPORTED_SCOPES = ("openid", "profile", "groups", "offline_access")
# What `authsvc oidc client add` gives a client without --scopes: a sign-in that can say who signed in
# (openid: sub; profile: preferred_username). groups and offline_access (refresh tokens) only when
# listed (ASVS V10.4.11).
DEFAULT_CLIENT_SCOPES = ("openid", "profile")
# What every client could ask for before clients had a scope list: migration 0009 gives it to them.
LEGACY_CLIENT_SCOPES = SUPPORTED_SCOPES
MAX_SCOPE_LENGTH = 512
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), joined by single spaces.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+\Z")


@dataclass(frozen=True)
class ScopeDecision:
    # ok | missing | too_long | malformed | openid_missing | unknown_scope | not_allowed | not_granted
    reason: str
    scopes: tuple[str, ...] = ()  # in SUPPORTED_SCOPES order, each once

    @property
    def accepted(self) -> bool:
        return self.reason == OK

    def text(self) -> str:
        return " ".join(self.scopes)


def unreadable_basic(header: str | None) -> bool:
    """Is ``header`` (an ``Authorization`` value) HTTP Basic credentials that are not base64 of
    UTF-8 text? Authlib raised UnicodeDecodeError reading them (``\\xff:\\xfe``, a lone surrogate):
    a 500 at /oauth/token and /oauth/revoke, and the ``unhandled_error`` alert, for anyone to set
    off (found by review, session 13). Such a request names no client: ``invalid_client``."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return True
    return False


def parse_scope(raw: object, supported: tuple[str, ...] = SUPPORTED_SCOPES,
                allowed: tuple[str, ...] | frozenset[str] | None = None) -> ScopeDecision:
    """The scopes of ``raw`` (RFC 6749 3.3), which must include ``openid`` and name only ``supported``
    ones: an unknown scope is refused (``unknown_scope``), not silently dropped. With ``allowed``
    (the client's registered scope list), a scope the provider offers but this client was not given
    is refused too (``not_allowed``): RFC 6749 3.3 lets the server refuse, and a client asking for
    more than it was registered for is told so rather than handed less than it expects."""
    if not isinstance(raw, str) or not raw:
        return ScopeDecision("missing")
    if len(raw) > MAX_SCOPE_LENGTH:
        return ScopeDecision("too_long")
    tokens = raw.split(" ")
    if not all(_SCOPE_TOKEN.match(t) for t in tokens):  # also "" from a double, leading or trailing space
        return ScopeDecision("malformed")
    if "openid" not in tokens:
        return ScopeDecision("openid_missing")
    if any(t not in supported for t in tokens):
        return ScopeDecision("unknown_scope")
    if allowed is not None and any(t not in allowed for t in tokens):
        return ScopeDecision("not_allowed")
    return ScopeDecision(OK, tuple(s for s in supported if s in tokens))


def refresh_scope(raw: object, granted: str, allowed: tuple[str, ...] | frozenset[str]) -> ScopeDecision:
    """The scope of the tokens a refresh grant issues (RFC 6749 6): without ``scope``, the one
    ``granted`` with the refresh token; with it, read like :func:`parse_scope` and never more than
    ``granted`` (``not_granted``). Either way only what the client is ``allowed`` now: a scope taken
    off the client's list is not kept alive by an old refresh token."""
    had = tuple(s for s in SUPPORTED_SCOPES if s in granted.split(" ")) if isinstance(granted, str) else ()
    if raw is None or raw == "":
        kept = tuple(s for s in had if s in allowed)
        return ScopeDecision(OK, kept) if "openid" in kept else ScopeDecision("not_allowed")
    asked = parse_scope(raw, allowed=allowed)
    if not asked.accepted:
        return asked
    if any(s not in had for s in asked.scopes):
        return ScopeDecision("not_granted")
    return asked


# --- PKCE (RFC 7636), S256 only (RFC 9700 2.1.1) ------------------------------------------------

# A verifier: 43 to 128 unreserved characters (RFC 7636 4.1). An S256 challenge is the base64url
# of a SHA-256 digest without padding: exactly 43 characters of the base64url alphabet, the last
# one of the 16 that leave the unused low bits zero.
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}\Z")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]\Z")


def challenge_verdict(challenge: object, method: object) -> str:
    """``"ok"`` for an S256 challenge, else ``missing`` (no challenge: PKCE is required of every
    client), ``plain_refused``, ``method_missing`` (RFC 7636 defaults to plain, which is refused),
    ``unsupported_method`` or ``malformed``."""
    if challenge is None or challenge == "":
        return "missing"
    if method == "plain":
        return "plain_refused"
    if method is None or method == "":
        return "method_missing"
    if method != "S256":
        return "unsupported_method"
    if not isinstance(challenge, str) or not _S256_CHALLENGE.match(challenge):
        return "malformed"
    return OK


def verifier_verdict(verifier: object) -> str:
    """``"ok"`` for a well-formed code_verifier, else ``missing`` or ``malformed``."""
    if verifier is None or verifier == "":
        return "missing"
    if not isinstance(verifier, str) or not _VERIFIER.match(verifier):
        return "malformed"
    return OK


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_matches(verifier: object, challenge: str, method: str) -> bool:
    """Whether ``verifier`` proves ``challenge`` (S256 only; a well-formed verifier only)."""
    if method != "S256" or verifier_verdict(verifier) != OK or not isinstance(verifier, str):
        return False
    return hmac.compare_digest(s256(verifier), challenge)


# --- prompt, max_age, second factor --------------------------------------------------------------

PROMPT_VALUES = frozenset({"none", "login", "consent", "select_account"})


def parse_prompt(raw: object) -> tuple[str, frozenset[str]]:
    """``("ok", values)`` or ``("invalid", ∅)``: space-separated known values; ``none`` only alone."""
    if raw is None or raw == "":
        return OK, frozenset()
    if not isinstance(raw, str) or len(raw) > 64:
        return "invalid", frozenset()
    values = raw.split(" ")
    if not all(v in PROMPT_VALUES for v in values):
        return "invalid", frozenset()
    found = frozenset(values)
    if "none" in found and len(found) > 1:
        return "invalid", frozenset()
    return OK, found


def parse_max_age(raw: object) -> tuple[str, int | None]:
    """``("ok", seconds or None)`` or ``("invalid", None)``: ASCII digits, at most 9 of them."""
    if raw is None or raw == "":
        return OK, None
    if not isinstance(raw, str) or not re.fullmatch(r"[0-9]{1,9}", raw):
        return "invalid", None
    return OK, int(raw)


PROCEED = "proceed"               # the session answers now
LOGIN = "login"                   # no session: the sign-in form, then back here
REAUTHENTICATE = "reauthenticate"  # prompt=login or max_age exceeded: sign in again, then back
STEP_UP = "step_up"               # the client requires mfa and the session has one factor
MFA_SET_UP_NEEDED = "mfa_set_up_needed"  # ... and the account has no second factor to step up with
LOGIN_REQUIRED = "login_required"  # prompt=none and the session cannot answer: error to the client


def session_decision(*, signed_in: bool, prompt: frozenset[str], max_age: int | None,
                     authenticated_at: float | None, now: float, multi_factor: bool, require_mfa: bool,
                     has_second_factor: bool, reauth_asked_at: float | None = None) -> str:
    """What an authorization request does with the browser's session. ``authenticated_at`` is when
    the user last proved a factor in it (None for a session restored from remember-me: never
    recent enough for ``max_age``). ``prompt`` comes from :func:`parse_prompt`.

    ``reauth_asked_at``: when an earlier request (``prompt=login``, ``max_age``) sent this session
    to sign in again. The sign-in page comes back to the request without those parameters (else
    ``max_age=0`` would loop); until the user has proved a factor after that moment, the request
    without them is the same request, however the browser got to it."""
    silent = "none" in prompt
    if not signed_in:
        return LOGIN_REQUIRED if silent else LOGIN
    stale = max_age is not None and (authenticated_at is None or now - authenticated_at > max_age)
    asked = reauth_asked_at is not None and not (authenticated_at is not None and authenticated_at >= reauth_asked_at)
    if "login" in prompt or stale or asked:
        return LOGIN_REQUIRED if silent else REAUTHENTICATE
    if require_mfa and not multi_factor:
        if silent:
            return LOGIN_REQUIRED
        return STEP_UP if has_second_factor else MFA_SET_UP_NEEDED
    return PROCEED


# The max_age a signed-out browser's request asking for a fresh sign-in comes back with (below).
SIGNED_OUT_WAY_BACK_MAX_AGE = 300


def signed_out_way_back(prompt: frozenset[str], max_age: int | None) -> tuple[tuple[str, str], ...] | None:
    """The ``prompt`` and ``max_age`` a request that found the browser signed out (:data:`LOGIN`)
    carries back from the sign-in form, the other parameters unchanged; None: back as it came.

    A request asking for a fresh sign-in (``prompt=login``, ``max_age``) came back with them, so
    the sign-in it had just had was asked for a second time (found by review of session 13's OIDC
    flow). It comes back without ``login`` (other prompt values kept) and with ``max_age`` of
    :data:`SIGNED_OUT_WAY_BACK_MAX_AGE` instead of the client's: the browser had no session, so
    whatever session it comes back with started after the request, and a factor proved for it
    satisfies both. The one session that proved none, a remember-me restore (the sign-in page
    restores one from the cookie and goes straight back), is never recent enough for any
    ``max_age``: :func:`session_decision` sends it to the form, marked, as before."""
    if "login" not in prompt and max_age is None:
        return None
    rest = " ".join(sorted(prompt - {"login"}))
    return ((("prompt", rest),) if rest else ()) + (("max_age", str(SIGNED_OUT_WAY_BACK_MAX_AGE)),)


def auth_time(authenticated_at: float | None, chain_signed_in_at: float | None, started_at: float) -> float:
    """The ``auth_time`` of a session's tokens: when the user last proved a factor for it (its
    sign-in, or a step-up since). A session restored from remember-me proved none: the time of the
    sign-in that issued the chain's first cookie (``chain_signed_in_at``), never the restore, which
    a client judging freshness would take for a sign-in just now. A chain from before revision 0011
    knows no time: the session's start, as before."""
    if authenticated_at is not None:
        return authenticated_at
    if chain_signed_in_at is not None:
        return chain_signed_in_at
    return started_at


# --- consent ------------------------------------------------------------------------------------

SKIP = "skip"
ASK = "ask"
CONSENT_REQUIRED = "consent_required"  # prompt=none and consent is needed: error to the client


def consent_decision(*, trusted: bool, public: bool, prompt: frozenset[str], granted: frozenset[str] | None,
                     requested: tuple[str, ...]) -> str:
    """Whether to show the consent page (ASVS V10.7.1). A ``public`` client (no secret) cannot prove
    who it is (anyone can send its client_id), so its user is asked every time, even when it is
    marked trusted and even when the user allowed it before; with ``prompt=none`` it gets
    ``consent_required``. A trusted confidential (first-party) client never asks; any other
    confidential client asks when ``prompt=consent`` does, or the user has not yet allowed every
    ``requested`` scope (the remembered answer lasts until the user revokes it on the account page)."""
    silent = "none" in prompt
    if public:
        return CONSENT_REQUIRED if silent else ASK
    if trusted:
        return SKIP
    covered = granted is not None and set(requested) <= granted
    if covered and "consent" not in prompt:
        return SKIP
    return CONSENT_REQUIRED if silent else ASK


def code_verdict(*, scope: str, multi_factor: bool, client_scopes: tuple[str, ...], trusted: bool,
                 public: bool, require_mfa: bool, granted: frozenset[str] | None) -> str:
    """``OK`` when a code, exchanged now, still fits its client as the client is now; else why not.
    ``client oidc update`` ends the codes it finds, but a sign-in that read the client before and
    wrote its code after was not among them (found by review, session 13): such a code carries a
    scope taken off the list (``scope_narrowed``), a sign-in without the second factor the client
    now requires (``mfa_required``), or, for a confidential client no longer trusted, no consent of
    the user's covering it (``no_consent``; also a consent the user revoked since)."""
    wanted = set(scope.split())
    if not wanted <= set(client_scopes):
        return "scope_narrowed"
    if require_mfa and not multi_factor:
        return "mfa_required"
    if not trusted and not public and (granted is None or not wanted <= granted):
        return "no_consent"
    return OK
