"""Who the forward-auth proxy says the user is: the identity headers read into an :class:`Identity`.

A pure function of header values (no Flask), so the hostile-input tests can call it directly.
authsvc's ``/auth/verify`` answers a live session with

* ``X-Auth-User``: the account's one name, in authsvc's normal form (ASCII ``a-z0-9._@+-``);
* ``X-Auth-User-Id``: the account's number (decimal ASCII digits);
* ``X-Auth-Methods``: RFC 8176 values, comma-separated (``pwd``, ``pwd,otp,mfa``);
* ``X-Auth-Groups``: group names, comma-separated (when the deployment has groups),

and the proxy copies them onto the app's request. Anything else is not authsvc's answer: a forged
or damaged header, or a proxy that appends instead of replacing. Such a request is refused
(:class:`Malformed`, a 401 in :mod:`flask_authsvc.extension`), never guessed at: no trimming of a
user name, no folding of look-alike characters, no picking one of two copies.

WSGI servers join repeated headers with commas (``alice, mallory``); neither the user name nor the
id may contain a comma or a space, so a repeated ``X-Auth-User`` or ``X-Auth-User-Id`` is refused
whichever way it arrives. A repeated ``X-Auth-Groups`` or ``X-Auth-Methods`` cannot be told from
one list; the shipped proxy configurations replace all four headers, so only the proxy writes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

USER: Final = "X-Auth-User"
USER_ID: Final = "X-Auth-User-Id"
GROUPS: Final = "X-Auth-Groups"
METHODS: Final = "X-Auth-Methods"
HEADERS: Final = (USER, USER_ID, GROUPS, METHODS)

# Bounds checked before any other work: a header longer than this is refused unread.
MAX_HEADER_LENGTH: Final = 4096
MAX_USERNAME_LENGTH: Final = 256   # authsvc's default policy allows 64; a deployment may raise it
MAX_USER_ID_LENGTH: Final = 20     # a 64-bit integer
MAX_GROUP_LENGTH: Final = 128
MAX_GROUPS: Final = 256
MAX_METHODS: Final = 16

_USERNAME: Final = re.compile(r"[a-z0-9._@+-]+", re.ASCII)
_USER_ID: Final = re.compile(r"[0-9]+", re.ASCII)
_GROUP: Final = re.compile(r"[A-Za-z0-9._@+:-]+", re.ASCII)
_METHOD: Final = re.compile(r"[a-z]{1,16}", re.ASCII)
# Spaces around list items are dropped (a tab, RFC 9110 OWS too, is refused with the control characters).
_OWS: Final = " "

# Reason codes of :class:`Malformed`.
REPEATED: Final = "repeated_header"
TOO_LONG: Final = "too_long"
NOT_ASCII: Final = "not_ascii"
CONTROL_CHARACTER: Final = "control_character"
MISSING_USER: Final = "missing_user"
BAD_USER: Final = "bad_user"
MISSING_USER_ID: Final = "missing_user_id"
BAD_USER_ID: Final = "bad_user_id"
BAD_GROUPS: Final = "bad_groups"
BAD_METHODS: Final = "bad_methods"


@dataclass(frozen=True)
class Identity:
    """The signed-in user as authsvc described them. ``user_id`` is a string (an OpenID Connect
    ``sub`` in the OIDC mode); ``groups`` and ``methods`` keep the order given, each once."""

    username: str
    user_id: str
    groups: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()

    @property
    def mfa(self) -> bool:
        """authsvc judged the sign-in multi-factor (it derives ``mfa``; the app never does)."""
        return "mfa" in self.methods

    def in_any_group(self, groups: Sequence[str]) -> bool:
        return any(group in self.groups for group in groups)


@dataclass(frozen=True)
class Anonymous:
    """No identity headers (or only empty ones): nobody is signed in."""


@dataclass(frozen=True)
class Malformed:
    """Identity headers that are not authsvc's answer; ``header`` names the first bad one."""

    reason: str
    header: str


ANONYMOUS: Final = Anonymous()
Verdict = Identity | Anonymous | Malformed


def _character_problem(value: str) -> str | None:
    if not value.isascii():
        return NOT_ASCII
    if any(ch < " " or ch == "\x7f" for ch in value):
        return CONTROL_CHARACTER
    return None


def _items(value: str, limit: int) -> list[str] | None:
    """A comma-separated list: items trimmed of spaces, empty items (``a,,b``, a trailing
    comma) skipped; None when there are more than ``limit``."""
    items = [item.strip(_OWS) for item in value.split(",")]
    items = [item for item in items if item]
    return items if len(items) <= limit else None


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def read_identity(headers: Mapping[str, Sequence[str]]) -> Verdict:
    """The verdict on a request's identity headers. ``headers`` maps a header name (any case) to
    every value the request carried under it, in order (a WSGI server gives one joined value).

    Returns :data:`ANONYMOUS` when every identity header is absent or empty (Traefik and Caddy
    blank a header they cannot remove), an :class:`Identity` when they are exactly authsvc's form,
    and :class:`Malformed` otherwise. Never raises for any ``str`` values."""
    values: dict[str, str] = {}
    by_name = {name.lower(): name for name in HEADERS}
    for raw_name, seen in headers.items():
        name = by_name.get(raw_name.lower())
        if name is None:
            continue
        seen = [value for value in seen if value != ""]
        if not seen:
            continue
        if name in values or len(seen) > 1:
            return Malformed(REPEATED, name)
        value = seen[0]
        if len(value) > MAX_HEADER_LENGTH:
            return Malformed(TOO_LONG, name)
        problem = _character_problem(value)
        if problem is not None:
            return Malformed(problem, name)
        values[name] = value
    if not values:
        return ANONYMOUS

    username = values.get(USER)
    if username is None:
        return Malformed(MISSING_USER, USER)
    if len(username) > MAX_USERNAME_LENGTH:
        return Malformed(TOO_LONG, USER)
    if not _USERNAME.fullmatch(username):
        return Malformed(BAD_USER, USER)

    user_id = values.get(USER_ID)
    if user_id is None:
        return Malformed(MISSING_USER_ID, USER_ID)
    if len(user_id) > MAX_USER_ID_LENGTH or not _USER_ID.fullmatch(user_id):
        return Malformed(BAD_USER_ID, USER_ID)

    groups = _items(values.get(GROUPS, ""), MAX_GROUPS)
    if groups is None or any(len(g) > MAX_GROUP_LENGTH or not _GROUP.fullmatch(g) for g in groups):
        return Malformed(BAD_GROUPS, GROUPS)

    methods = _items(values.get(METHODS, ""), MAX_METHODS)
    if methods is None or not all(_METHOD.fullmatch(m) for m in methods):
        return Malformed(BAD_METHODS, METHODS)

    return Identity(username, user_id, _unique(groups), _unique(methods))


def headers_from_environ(environ: Mapping[str, object]) -> dict[str, list[str]]:
    """The identity headers of a WSGI request, as :func:`read_identity` takes them. A value that is
    not a ``str`` (no server sends one) reads as a malformed control character rather than raising."""
    found: dict[str, list[str]] = {}
    for name in HEADERS:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        if value is not None:
            found[name] = [value if isinstance(value, str) else "\x00"]
    return found


# --- the OIDC mode: the same identity from an ID token's claims ----------------------------------

MAX_SUBJECT_LENGTH: Final = 255   # OpenID Connect Core 1.0: "sub" is at most 255 ASCII characters
_SUBJECT: Final = re.compile(r"[!-~]+", re.ASCII)   # printable ASCII, no space
BAD_SUBJECT: Final = "bad_subject"


def identity_from_claims(claims: Mapping[str, object]) -> Identity | Malformed:
    """The identity in validated ID token claims (the signature, issuer, audience, expiry and nonce
    are Authlib's to check first): ``preferred_username`` in authsvc's form, ``sub``, and the
    optional ``groups`` and ``amr`` lists. Anything else is :class:`Malformed` (``header`` names the
    claim), never a guess."""
    username = claims.get("preferred_username")
    if not isinstance(username, str) or not username:
        return Malformed(MISSING_USER, "preferred_username")
    if len(username) > MAX_USERNAME_LENGTH or not _USERNAME.fullmatch(username):
        return Malformed(BAD_USER, "preferred_username")
    subject = claims.get("sub")
    if not isinstance(subject, str) or len(subject) > MAX_SUBJECT_LENGTH or not _SUBJECT.fullmatch(subject):
        return Malformed(BAD_SUBJECT, "sub")
    groups = claims.get("groups", [])
    if (not isinstance(groups, list) or len(groups) > MAX_GROUPS
            or not all(isinstance(g, str) and len(g) <= MAX_GROUP_LENGTH and _GROUP.fullmatch(g) for g in groups)):
        return Malformed(BAD_GROUPS, "groups")
    methods = claims.get("amr", [])
    if (not isinstance(methods, list) or len(methods) > MAX_METHODS
            or not all(isinstance(m, str) and _METHOD.fullmatch(m) for m in methods)):
        return Malformed(BAD_METHODS, "amr")
    return Identity(username, subject, _unique(groups), _unique(methods))
