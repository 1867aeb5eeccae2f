"""Logout decisions for the OpenID Provider (OpenID Connect RP-Initiated Logout 1.0 and Back-Channel
Logout 1.0), as pure functions of plain values. Every verdict is a reason code; ``"ok"`` is the
only good one. The I/O (verifying the hint's signature, ending the session, sending the logout
token) is :mod:`authsvc.core.oidc.logout`'s; the views only render the outcome.

Reason codes:

``post_logout_redirect_verdict``
    ``missing``, ``too_long``, ``no_client`` (no client_id and no id_token_hint: nothing to match
    against), ``not_registered`` (not byte for byte one of the client's ``post_logout_redirect_uris``:
    prefix, suffix, case, fragment, another client's, ``javascript:`` all land here).
``hint_claims_verdict`` (the hint's signature was checked by its caller with our published keys)
    ``alg_refused``, ``wrong_issuer``, ``no_audience``, ``client_mismatch`` (``client_id`` given and
    not in ``aud``), ``no_subject``, ``issued_in_future``, ``too_old`` (``iat`` older than
    ``max_age``: a hint older than the longest session cannot name a live one), ``malformed``.
``logout_step``
    ``end_now`` (the hint names this very session: the RP that holds its ID token asks, no page),
    ``confirm`` (signed in, but nothing proves the request comes from an app of this session:
    a CSRF-protected page asks first, else any site could sign the user out with a link),
    ``nothing_to_end`` (signed out already).
``delivery_verdict`` (a back-channel POST's HTTP status)
    ``delivered`` (2xx), ``retry`` (5xx, 429, 408 and no answer at all: ``None``), ``give_up``
    (any other 4xx: the receiver refused the token; sending it again changes nothing; and 3xx:
    a logout token is never carried to another address).
"""

from __future__ import annotations

from authsvc.rules.oidc_redirects import with_params

OK = "ok"
END_NOW = "end_now"
CONFIRM = "confirm"
NOTHING_TO_END = "nothing_to_end"
DELIVERED = "delivered"
RETRY = "retry"
GIVE_UP = "give_up"

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_REDIRECT_URI = 2048
MAX_HINT = 8192
MAX_STATE = 1024
CLOCK_SKEW_SECONDS = 60
HINT_ALGORITHMS = ("ES256", "RS256")  # what authsvc signs with: never none, never HMAC


def post_logout_redirect_verdict(uri: object, registered: tuple[str, ...] | None) -> str:
    """Exact string match (OpenID RP-Initiated Logout 1.0 section 3: "MUST ... exactly match"). No
    loopback port exception here: a logout redirect carries no credential a native app must catch,
    and the registered list is what the admin typed."""
    if uri is None or uri == "":
        return "missing"
    if not isinstance(uri, str):
        return "not_registered"
    if len(uri) > MAX_REDIRECT_URI:
        return "too_long"
    if registered is None:
        return "no_client"
    return OK if any(uri == r for r in registered) else "not_registered"


def logout_location(uri: str, registered: tuple[str, ...], state: str | None) -> str:
    """The Location after a logout: ``uri`` with ``state``, only when
    :func:`post_logout_redirect_verdict` accepts it (else ValueError: the caller shows a page). The
    one way the views build a logout redirect (tests/security/astrules.py)."""
    if post_logout_redirect_verdict(uri, registered) != OK:
        raise ValueError("post_logout_redirect_uri not registered for this client")
    return with_params(uri, [("state", state)] if state is not None else [])


def hint_claims_verdict(header: dict, claims: dict, *, issuer: str, client_id: str | None, now: float,
                        max_age: float) -> str:
    """Judge an ``id_token_hint`` whose signature verified with one of our keys. ``exp`` is not
    checked: the spec allows an expired ID token as a hint (the user's session often outlives it);
    ``max_age`` bounds how old instead."""
    if header.get("alg") not in HINT_ALGORITHMS:
        return "alg_refused"
    if claims.get("iss") != issuer:
        return "wrong_issuer"
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    if not audiences or not all(isinstance(a, str) and a for a in audiences):
        return "no_audience"
    if client_id is not None and client_id not in audiences:
        return "client_mismatch"
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        return "no_subject"
    sid = claims.get("sid")
    iat = claims.get("iat")
    if (sid is not None and not isinstance(sid, str)) or isinstance(iat, bool) or not isinstance(iat, (int, float)):
        return "malformed"
    if iat > now + CLOCK_SKEW_SECONDS:
        return "issued_in_future"
    if now - iat > max_age:
        return "too_old"
    return OK


def hint_client(claims: dict) -> str | None:
    """The client a verified hint was issued to (``azp``, else a single ``aud``)."""
    azp = claims.get("azp")
    if isinstance(azp, str) and azp:
        return azp
    aud = claims.get("aud")
    if isinstance(aud, str):
        return aud
    if isinstance(aud, list) and len(aud) == 1 and isinstance(aud[0], str):
        return aud[0]
    return None


def logout_step(*, signed_in: bool, hint_sid: str | None, hint_sub: str | None, session_sid: str | None,
                session_sub: str | None) -> str:
    """Whether to end the browser's session now, ask first, or do nothing. Ending without asking
    needs a verified hint naming this session (``sid``) of this user (``sub``): only an app that
    got an ID token in this session holds one, and that app may sign the user out anyway."""
    if not signed_in:
        return NOTHING_TO_END
    if hint_sid and session_sid and hint_sid == session_sid and hint_sub is not None and hint_sub == session_sub:
        return END_NOW
    return CONFIRM


def state_verdict(state: object) -> str:
    if state is None:
        return OK
    if not isinstance(state, str) or not state or len(state) > MAX_STATE:
        return "invalid_state"
    return OK


# --- back-channel --------------------------------------------------------------------------------

def logout_token_claims(*, issuer: str, client_id: str, sub: str, sid: str, now: float, lifetime: int,
                        jti: str) -> dict:
    """The claims of a logout token (Back-Channel Logout 1.0 section 2.4): ``sid`` and ``sub`` both,
    as strings; the event member an empty JSON object; never a ``nonce`` (section 2.4 forbids it, so
    a logout token can never pass as an ID token)."""
    now = int(now)
    return {"iss": issuer, "aud": client_id, "iat": now, "exp": now + lifetime, "jti": jti,
            "sub": str(sub), "sid": str(sid), "events": {BACKCHANNEL_EVENT: {}}}


def delivery_verdict(status: int | None) -> str:
    if status is None or status >= 500 or status in (408, 429):
        return RETRY
    if 200 <= status < 300:
        return DELIVERED
    return GIVE_UP


def backoff_seconds(attempt: int, base: float, cap: float = 60.0) -> float:
    """Wait before attempt ``attempt + 1`` (``attempt`` counts from 1): base, 2 x base, 4 x base, ..."""
    return min(cap, base * (2 ** max(0, attempt - 1)))
