"""Passkey (WebAuthn) decisions: which relying party the service is, whether an authenticator's
signature counter may be accepted, what a passkey may be called, and which RFC 8176 methods a
passkey sign-in records. Pure functions of plain values, standard library only; the ceremonies
themselves (py_webauthn) are :mod:`authsvc.core.passkeys`.

Reason codes of :func:`relying_party` (``RelyingPartyDecision.reason``):

==================== ==========================================================================
``ok``               the relying party is usable
``no_public_url``    ``AUTHSVC_PUBLIC_URL`` is not set: there is no origin to expect
``bad_public_url``   it is not a bare ``scheme://host[:port]`` origin
``ip_address``       the host (or the relying-party id) is an IP address, which WebAuthn refuses
``not_secure``       plain http on a host other than ``localhost``: not a secure context
``not_ascii``        the relying-party id is not ASCII (write an IDN in punycode, ``xn--``)
``not_canonical``    upper case or a trailing dot: the id must be written as browsers compare it
``not_a_domain``     empty, too long, an empty label, or characters a host name cannot have
``public_suffix``    a single label (``com``) or a listed public suffix: every site under it
                     could use the passkeys
``not_a_parent``     neither the service's host nor a parent domain of it (``evilexample.com``
                     for ``auth.example.com``, or another site altogether)
==================== ==========================================================================

Reason codes of :func:`sign_count_verdict`: ``ok``, ``repeated`` (the same non-zero count again),
``regressed`` (lower than stored: a cloned authenticator or a replay), ``invalid`` (not a 32-bit
unsigned integer).

Reason codes of :func:`passkey_name`: ``ok``, ``not_text``, ``empty``, ``too_long``,
``combining_marks``, ``control_character``, ``bidi_control``, ``invisible_character``,
``invalid_character``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from authsvc.rules.redirects import parse_origin
from authsvc.rules.streamsafe import is_stream_safe

# --- the relying party -----------------------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_NUMBER = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z", re.IGNORECASE)
_LOCALHOST = "localhost"


@dataclass(frozen=True)
class RelyingParty:
    """What every ceremony is checked against: ``id`` (its SHA-256 is the authenticator data's
    rpIdHash) and ``origin`` (what the browser writes into clientDataJSON: the service's own
    origin, where the ceremonies run, whatever the cookie domain)."""

    id: str
    origin: str


@dataclass(frozen=True)
class RelyingPartyDecision:
    party: RelyingParty | None
    reason: str


def _refused(reason: str) -> RelyingPartyDecision:
    return RelyingPartyDecision(None, reason)


def _is_ip(host: str) -> bool:
    """A bracketed IPv6 literal, or a host whose last label is a number: browsers read that as
    IPv4 (the WHATWG URL standard's "ends in a number": ``192.0.2.1``, ``1.0x7f``, ``3627734734``)."""
    return host.startswith("[") or _NUMBER.match(host.rpartition(".")[2]) is not None


def rp_id_problem(rp_id: object, public_suffixes: frozenset[str] = frozenset()) -> str | None:
    """Why ``rp_id`` cannot be a relying-party id on its own (a reason code), or None."""
    if not isinstance(rp_id, str):
        return "not_a_domain"
    if not rp_id.isascii():
        return "not_ascii"
    if rp_id != rp_id.lower() or rp_id.endswith("."):
        return "not_canonical"
    if not rp_id or len(rp_id) > 253 or not all(_LABEL.match(label) for label in rp_id.split(".")):
        return "not_a_domain"
    if _is_ip(rp_id):
        return "ip_address"
    if ("." not in rp_id and rp_id != _LOCALHOST) or rp_id in public_suffixes:
        return "public_suffix"
    return None


def relying_party(public_url: str | None, cookie_domain: str | None = None, rp_id: str | None = None, *,
                  public_suffixes: frozenset[str] = frozenset()) -> RelyingPartyDecision:
    """The relying party for a service at ``public_url``.

    Its id is ``rp_id`` when one is configured, else the cookie domain when single sign-on is on
    (``AUTHSVC_COOKIE_DOMAIN``, its leading dot dropped), else the public URL's host. Any of them
    must be that host or a parent domain of it that is not a public suffix (``public_suffixes``
    adds to the single-label rule; browsers refuse the rest), and the origin must be a secure
    context: https, or http on ``localhost`` for development.
    """
    if not public_url:
        return _refused("no_public_url")
    try:
        origin = parse_origin(public_url)
    except ValueError:
        return _refused("bad_public_url")
    scheme, _, authority = origin.partition("://")
    host = authority.rsplit(":", 1)[0] if not authority.startswith("[") else authority
    if _is_ip(host):
        return _refused("ip_address")
    if scheme != "https" and host != _LOCALHOST and not host.endswith("." + _LOCALHOST):
        return _refused("not_secure")
    if rp_id is not None:
        candidate = rp_id
    elif cookie_domain:
        candidate = cookie_domain.removeprefix(".")
    else:
        candidate = host
    problem = rp_id_problem(candidate, public_suffixes)
    if problem is not None:
        return _refused(problem)
    if candidate != host and not host.endswith("." + candidate):
        return _refused("not_a_parent")
    return RelyingPartyDecision(RelyingParty(candidate, origin), "ok")


# --- the signature counter -------------------------------------------------------------------------------

MAX_SIGN_COUNT = 2**32 - 1  # authenticator data holds it in four bytes


def sign_count_verdict(stored: int, received: int) -> str:
    """May an assertion carrying signature counter ``received`` be accepted for a passkey whose
    stored counter is ``stored``? WebAuthn section 6.1.1: a counter that does not grow means a
    cloned authenticator or a replayed response. Authenticators that keep no counter send 0 every
    time, and stay acceptable as long as they never sent anything else."""
    if type(stored) is not int or type(received) is not int:
        return "invalid"
    if not (0 <= stored <= MAX_SIGN_COUNT and 0 <= received <= MAX_SIGN_COUNT):
        return "invalid"
    if received > stored or received == stored == 0:
        return "ok"
    return "repeated" if received == stored else "regressed"


# --- names -----------------------------------------------------------------------------------------------

MAX_NAME_LENGTH = 64
# Read before normalising (NFC may lengthen text a little): anything longer is refused unread.
MAX_RAW_NAME_LENGTH = MAX_NAME_LENGTH * 4
# Explicit bidirectional formatting: a name could reorder the text shown around it on the account
# page ("Trojan Source", CVE-2021-42574).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Joiners are the only invisible formatting characters a name needs (Persian, Indic scripts, emoji
# sequences); every other one (U+200B, U+2060, U+FEFF, soft hyphen, tags) only hides text.
_JOINERS = frozenset("\u200c\u200d")


@dataclass(frozen=True)
class NameDecision:
    name: str | None   # the name to store (NFC, whitespace runs as one space, trimmed) when accepted
    reason: str


def _char_problem(char: str) -> str | None:
    if char in BIDI_CONTROLS:
        return "bidi_control"
    category = unicodedata.category(char)
    if category == "Cc" or category in ("Zl", "Zp"):
        return "control_character"
    if category == "Cf" and char not in _JOINERS:
        return "invisible_character"
    if category in ("Cs", "Co", "Cn") or char == "\ufffd":
        return "invalid_character"
    return None


def passkey_name(raw: object) -> NameDecision:
    """The name a user may give a passkey (shown only to them, on the account page), or why not.

    Bounded before any normalisation (length, then the Stream-Safe rule), then every character is
    judged, then NFC and whitespace folding; the result must be 1 to :data:`MAX_NAME_LENGTH` code
    points. Refused rather than cleaned: a name is typed by its owner, and a control or bidi
    character in it was put there on purpose by someone else."""
    if not isinstance(raw, str):
        return NameDecision(None, "not_text")
    if len(raw) > MAX_RAW_NAME_LENGTH:
        return NameDecision(None, "too_long")
    if not is_stream_safe(raw):
        return NameDecision(None, "combining_marks")
    for char in raw:
        problem = _char_problem(char)
        if problem is not None:
            return NameDecision(None, problem)
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name:
        return NameDecision(None, "empty")
    if len(name) > MAX_NAME_LENGTH:
        return NameDecision(None, "too_long")
    return NameDecision(name, "ok")


# --- what a passkey sign-in proves (RFC 8176) -------------------------------------------------------------

def passkey_methods(*, multi_device: bool, user_verified: bool) -> tuple[str, ...]:
    """The RFC 8176 authentication method references of a sign-in with a passkey: ``swk`` for a
    synced (backup-eligible, "multi-device") key that software holds, ``hwk`` for one bound to its
    authenticator; ``user`` (presence: WebAuthn requires it of every assertion); ``mfa`` when the
    authenticator verified the user too, since that passkey is then two factors on its own."""
    key = "swk" if multi_device else "hwk"
    return (key, "user", "mfa") if user_verified else (key, "user")
