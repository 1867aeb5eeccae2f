"""Access rules: may *this* request, by *this* user, with *these* factors, reach *this* app?

Pure functions of plain values, standard library only. :mod:`authsvc.core.policy` builds
:class:`AccessRules` once from the ``[access]`` policy (with :func:`rule_problem` judging each
rule's values); ``/auth/verify`` and ``authsvc access explain`` ask :func:`decide`.

The request is the one the trusted proxy described (:mod:`authsvc.rules.forward_auth`): host, path
and method. The query and the fragment never take part. First matching rule wins; no match means
``default``. Each :class:`Decision` carries a verdict, the index of the deciding rule (None: the
default, or no rule could be applied) and a reason code:

======================  ===========  =========================================================
reason                  verdict      meaning
======================  ===========  =========================================================
``no_rules``            by default   no rules: the default decides (one_factor = before rules)
``rule``                by policy    the rule at ``rule`` matched
``default``             by policy    rules exist, none matched
``unknown_request``     deny         rules exist, and the proxy described no usable host
``ambiguous_path``      deny         the host has path rules, and the path is ambiguous
                                     (:func:`normalize_path` returns None for it), or it
                                     reaches a rule's path only as :func:`fold_path` reads it
``bad_method``          deny         the host has method rules, and the method is not a token
``who_is_asking``       login        an anonymous request reached a rule naming users/groups
``no_second_factor``    deny         ``two_factor``, a one-factor session, and the account has
                                     no second factor to step up with (:func:`for_the_account`)
======================  ===========  =========================================================

A policy becomes a verdict as follows: ``bypass`` -> :data:`BYPASS` (whoever asks, no identity);
``deny`` -> :data:`DENY`; ``one_factor`` -> :data:`ALLOW` when signed in, else :data:`LOGIN`;
``two_factor`` -> :data:`ALLOW` for a multi-factor session, :data:`STEP_UP` for a one-factor
one, :data:`LOGIN` when signed out.

Paths are decided on the path as the app will see it (:func:`normalize_path`): unreserved
characters percent-decoded, repeated slashes collapsed, dot segments resolved. What an app or a
framework might read another way (an encoded slash or backslash, a literal backslash, a double
encoding, an encoded dot segment, an encoded control character, a ``;`` path parameter) makes the
path ambiguous, and an ambiguous path on a host with path rules is denied, not guessed about.
So is a path that reaches a rule's path only when read as a case-insensitive server reads it
(:func:`fold_path`: ``/notes/ADMIN`` or ``/notes/admin.`` against a rule on ``/notes/admin``):
Express by default, Windows/IIS and files on a case-insensitive disk serve the rule's path for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from authsvc.rules.auth_methods import is_multi_factor

BYPASS: Final = "bypass"
DENY: Final = "deny"
ONE_FACTOR: Final = "one_factor"
TWO_FACTOR: Final = "two_factor"
POLICIES: Final = (BYPASS, DENY, ONE_FACTOR, TWO_FACTOR)
DEFAULT_POLICIES: Final = (DENY, ONE_FACTOR, TWO_FACTOR)  # a default of bypass would open every app

# Verdicts.
ALLOW: Final = "allow"      # 200 with the identity headers
LOGIN: Final = "login"      # 401 / the login redirect
STEP_UP: Final = "step_up"  # signed in with one factor, two are needed: the sign-in again, with its second step
# DENY (403) and BYPASS (200 without identity) are the policies' own names.
NO_SECOND_FACTOR: Final = "no_second_factor"  # the reason of a step-up the account cannot take

PLAN_CACHE: Final = 1024  # hosts whose rule list is remembered (more are worked out on every request)
MAX_PATH: Final = 8192   # longer than any request line a proxy passes (nginx: 8 KiB); longer is ambiguous
MAX_HOST: Final = 253

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_RULE_HOST = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})+\Z")  # a rule names a domain: at least two labels
_PORT = re.compile(r":[0-9]{1,5}\Z")
_METHOD = re.compile(r"[A-Z]{1,16}\Z")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_DOUBLE = re.compile(r"%25[0-9A-Fa-f]{2}")
# What Windows drops from the end of a file name (dots, spaces), and NTFS's name of a file's
# main data stream (IIS served "/secret.txt::$DATA" as "/secret.txt" on unpatched versions).
_TRAILING = re.compile(r"(?:\.|%20|::\$data)+\Z")
# Escapes normalize_path keeps: decoded, each would change how the path is read ("%" starts an
# escape, "?" a query, "#" a fragment, ";" a path parameter) or is a space (fold_path reads "%20").
_KEPT_ENCODED = frozenset("%?#; ")
# Printable ASCII but the space: what a path may hold before decoding (the rest is an ambiguity).
_PRINTABLE = re.compile(r"[\x21-\x7e]*\Z")


@dataclass(frozen=True)
class Rule:
    """One ``[[access.rules]]`` entry, its values already in normal form (:func:`rule_problem`)."""

    hosts: tuple[str, ...]                 # lower case, no trailing dot; "*.example.com" = its subdomains
    policy: str
    paths: tuple[str, ...] = ()            # normal-form prefixes, matched on segment boundaries
    methods: frozenset[str] = frozenset()  # upper case
    groups: frozenset[str] = frozenset()   # group names (authsvc.rules.groups)
    users: frozenset[str] = frozenset()    # canonical usernames (authsvc.rules.usernames)

    # Built once from ``paths`` for the hot path: the paths themselves, and each as a prefix that
    # ends on a segment boundary, so a match is two C calls (a set lookup, str.startswith of a tuple).
    # The same for the paths as fold_path reads them, and whether that differs from the paths.
    _whole: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)
    _under: tuple = field(default=(), init=False, repr=False, compare=False)
    _folded_whole: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)
    _folded_under: tuple = field(default=(), init=False, repr=False, compare=False)
    _folds: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        folded = tuple(fold_path(p) for p in self.paths)
        object.__setattr__(self, "_whole", frozenset(self.paths))
        object.__setattr__(self, "_under", tuple(p if p.endswith("/") else p + "/" for p in self.paths))
        object.__setattr__(self, "_folded_whole", frozenset(folded))
        object.__setattr__(self, "_folded_under", tuple(p if p.endswith("/") else p + "/" for p in folded))
        object.__setattr__(self, "_folds", folded != self.paths)

    @property
    def names_someone(self) -> bool:
        return bool(self.groups or self.users)

    def matches_path(self, path: str) -> bool:
        """One of ``paths`` matches ``path`` (a normal form) on a segment boundary (:func:`path_matches`)."""
        return path in self._whole or path.startswith(self._under)

    def matches_only_folded(self, normal: str, folded: str) -> bool:
        """``normal`` misses every one of ``paths``, but ``folded`` (:func:`fold_path` of it) reaches
        one as folded: a case-insensitive server would serve this rule's path for it."""
        if not self.paths or (folded == normal and not self._folds):
            return False  # nothing folds: the two readings are one
        reaches = folded in self._folded_whole or folded.startswith(self._folded_under)
        return reaches and not self.matches_path(normal)


@dataclass(frozen=True)
class AccessRules:
    """The rules in order, and an index built once from them: which rules a host has (exact names
    in a dict, wildcards in a short list), so a decision tries only those."""

    default: str = ONE_FACTOR
    rules: tuple[Rule, ...] = ()
    _exact: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _wildcards: tuple = field(default=(), init=False, repr=False, compare=False)
    _plans: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact: dict[str, list[int]] = {}
        wildcards: list[tuple[str, int]] = []
        for i, rule in enumerate(self.rules):
            for pattern in rule.hosts:
                if pattern.startswith("*."):
                    wildcards.append((pattern[1:], i))
                else:
                    exact.setdefault(pattern, []).append(i)
        object.__setattr__(self, "_exact", {h: tuple(sorted(set(v))) for h, v in exact.items()})
        object.__setattr__(self, "_wildcards", tuple(wildcards))

    def plan(self, raw_host: str | None) -> tuple[tuple[Rule, ...], tuple[int, ...], bool, bool] | None:
        """For a host as the proxy sent it: its rules and their indices in order, whether any has
        paths, whether any has methods; None when the host is unreadable (:func:`normalize_host`).
        Remembered for up to :data:`PLAN_CACHE` spellings (a proxy may pass any Host)."""
        found = self._plans.get(raw_host, self)
        if found is not self:
            return found  # type: ignore[return-value]
        host = normalize_host(raw_host)
        if host is None:
            found = None
        else:
            found = self._plan(host)
        if len(self._plans) < PLAN_CACHE and raw_host is not None:
            self._plans[raw_host] = found
        return found

    def _plan(self, host: str) -> tuple[tuple[Rule, ...], tuple[int, ...], bool, bool]:
        indices = set(self._exact.get(host, ()))
        indices.update(i for suffix, i in self._wildcards if host.endswith(suffix))
        ordered = tuple(sorted(indices))
        rules = tuple(self.rules[i] for i in ordered)
        return rules, ordered, any(r.paths for r in rules), any(r.methods for r in rules)


@dataclass(frozen=True)
class Decision:
    verdict: str          # ALLOW, BYPASS, LOGIN, DENY or STEP_UP
    rule: int | None      # index of the deciding rule; None for the default or no rule at all
    reason: str           # see the module's table


NO_RULES: Final = AccessRules()


# --- normal forms ---------------------------------------------------------------------------------

def normalize_host(raw: str | None) -> str | None:
    """The host a rule compares: lower case, without the port and one trailing dot. None when it
    is not an ASCII DNS name (a Unicode look-alike, an address with userinfo, an empty label)."""
    if not raw or len(raw) > MAX_HOST + 7:
        return None
    host = _PORT.sub("", raw, count=1).lower()
    host = host.removesuffix(".")
    if len(host) > MAX_HOST or not host.isascii() or not _HOST.match(host):
        return None
    return host


def normalize_path(raw: str) -> str | None:
    """The path as the app will see it, or None when apps could read it in more than one way.

    The query is cut off. Escapes of printable ASCII characters are decoded (``%61`` is ``a``,
    ``%40`` is ``@``: every app decodes them), except those of ``%``, ``?``, ``#``, ``;`` and space,
    which keep an upper-case form as do escapes of other bytes; repeated slashes collapse, literal
    ``.`` and ``..`` segments are resolved (RFC 3986 5.2.4, never above the root); a trailing slash
    stays. None for: no leading ``/``, a space or character outside printable ASCII, a ``#`` (no
    browser sends a fragment; nginx passes one on in the path, and Go's server reads it as part of
    the path), a malformed escape, an encoded slash or backslash (``%2f``, ``%5c``, any case), a
    literal backslash, a double encoding (``%25`` followed by two hex digits), an encoded control
    character, a dot segment made by decoding (``%2e%2e``), a ``;`` (path parameters, which Java
    servers strip), or more than :data:`MAX_PATH` characters."""
    path = raw.split("?", 1)[0]
    if "#" in path:
        return None
    if not path.startswith("/") or len(path) > MAX_PATH or not _PRINTABLE.match(path):
        return None
    if "%" not in path and "//" not in path and "/." not in path and "\\" not in path and ";" not in path:
        return path  # already in normal form: the common case, decided without splitting
    if "\\" in path or ";" in path:
        return None  # a backslash (a separator to some servers) or a path parameter (stripped by Java's)
    if "%" in path and ("%" in _PCT.sub("", path) or _DOUBLE.search(path)):
        return None  # a "%" that starts no escape, or an escape of an escape
    segments: list[str] = []
    for raw_segment in path.split("/")[1:]:
        segment = _PCT.sub(_decode_escape, raw_segment) if "%" in raw_segment else raw_segment
        if "\x00" in segment:
            return None
        if segment in (".", "..") and segment != raw_segment:
            return None  # a dot segment only once decoded
        segments.append(segment)
    out: list[str] = []
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        elif segment or last:  # an empty segment is a repeated slash, or the trailing one
            out.append(segment)
    return "/" + "/".join(out)


def fold_path(normal: str) -> str:
    """A normal form (:func:`normalize_path`) as a case-insensitive server reads it: letters in
    lower case, and each segment without its trailing dots and spaces (Windows drops them from file
    names, so IIS serves ``/admin`` for ``/admin.`` and ``/admin%20``; and ``::$DATA``, NTFS's
    name of a file's data stream); a segment left empty goes.
    A path that reaches a rule's path only in this reading is ambiguous (:func:`decide`)."""
    folded = normal.lower()
    if "." not in folded and "%20" not in folded and "::$" not in folded:
        return folded
    segments = folded.split("/")
    kept = [segments[0]]
    for i, segment in enumerate(segments[1:], start=1):
        stripped = _TRAILING.sub("", segment)
        if stripped or i == len(segments) - 1:
            kept.append(stripped)
    return "/".join(kept) or "/"


def _decode_escape(match: re.Match) -> str:
    code = int(match.group(1), 16)
    char = chr(code)
    if char in "/\\" or code < 0x20 or code == 0x7f:
        # An encoded slash, backslash or control character is read differently by different apps
        # (and proxies): the marker makes normalize_path refuse the path.
        return "\x00"
    if code < 0x7f and char not in _KEPT_ENCODED:
        return char  # apps decode it, so "/@admin" and "/%40admin" are one path to them
    return f"%{match.group(1).upper()}"


def path_matches(prefix: str, path: str) -> bool:
    """``prefix`` (a normal form) matches ``path`` on a segment boundary: ``/admin`` matches
    ``/admin`` and ``/admin/x``, not ``/administrator``; ``/`` matches every path."""
    return path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def host_matches(pattern: str, host: str) -> bool:
    """``admin.example.com`` matches that host only; ``*.example.com`` matches its subdomains,
    at any depth, never ``example.com`` itself or ``evil-example.com``."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


# --- the decision ---------------------------------------------------------------------------------

def decide(rules: AccessRules, host: str | None, path: str | None, method: str, user: str | None,
           groups: Iterable[str] = (), methods: Iterable[str] = ()) -> Decision:
    """The verdict on one request: ``host`` and ``path`` (query allowed, ignored) as the trusted
    proxy described them (None: it described none), ``method`` likewise; ``user`` the signed-in
    user's canonical name or None when signed out, ``groups`` their groups, ``methods`` the RFC 8176
    methods of their session."""
    if not rules.rules:
        return _verdict(rules.default, None, "no_rules", user, methods)
    plan = rules.plan(host)
    if plan is None:
        return Decision(DENY, None, "unknown_request")
    applicable, indices, has_paths, has_methods = plan
    normal = None
    if has_paths:
        normal = normalize_path(path) if path is not None else None
        if normal is None:
            return Decision(DENY, None, "ambiguous_path")
        folded = fold_path(normal)
        if any(rule.matches_only_folded(normal, folded) for rule in applicable):
            return Decision(DENY, None, "ambiguous_path")
    if has_methods and not _METHOD.match(method or ""):
        return Decision(DENY, None, "bad_method")
    member = None
    for i, rule in zip(indices, applicable):
        if rule.paths and not rule.matches_path(normal):  # type: ignore[arg-type]
            continue
        if rule.methods and not method_matches(rule.methods, method):
            continue
        if rule.groups or rule.users:
            if user is None:
                return Decision(LOGIN, i, "who_is_asking")
            if member is None:
                member = frozenset(groups)
            if user not in rule.users and not member & rule.groups:
                continue
        return _verdict(rule.policy, i, "rule", user, methods)
    return _verdict(rules.default, None, "default", user, methods)


def for_the_account(decision: Decision, can_step_up: bool) -> Decision:
    """``decision`` as it turns out for this account: a step-up the account cannot take (no second
    factor, and the policy does not make it set one up at sign-in: ``can_step_up`` False) is a
    deny, reason ``no_second_factor``; sending it to sign in again would only bring it back here.
    Every other decision is returned as it is. /auth/verify and ``authsvc access explain`` both ask."""
    if decision.verdict == STEP_UP and not can_step_up:
        return Decision(DENY, decision.rule, NO_SECOND_FACTOR)
    return decision


def method_matches(listed: frozenset[str], method: str) -> bool:
    """Does a rule listing ``listed`` apply to ``method``? ``HEAD`` is ``GET`` without the body (RFC
    9110 9.3.2): the app runs its ``GET`` handler, side effects included, so a rule about ``GET``
    holds for ``HEAD`` too."""
    return method in listed or (method == "HEAD" and "GET" in listed)


def _verdict(policy: str, index: int | None, reason: str, user: str | None, methods: Iterable[str]) -> Decision:
    if policy == BYPASS:
        return Decision(BYPASS, index, reason)
    if policy == DENY:
        return Decision(DENY, index, reason)
    if user is None:
        return Decision(LOGIN, index, reason)
    if policy == TWO_FACTOR and not is_multi_factor(methods):
        return Decision(STEP_UP, index, reason)
    return Decision(ALLOW, index, reason)


# --- building and linting rules ------------------------------------------------------------------

def rule_host_problem(raw: object) -> str | None:
    """Why ``raw`` cannot be a rule's host, or None. Rules name hosts in their normal form."""
    if not isinstance(raw, str):
        return "must be a string"
    if not raw.isascii():
        return "is not ASCII: write an internationalized name in its xn-- (punycode) form"
    if _PORT.search(raw):
        return "names a port: write the host alone (rules match every port)"
    if raw != raw.lower() or raw.endswith("."):
        return f'is not in normal form: write "{raw.lower().rstrip(".")}"'
    if not _RULE_HOST.match(raw) or len(raw) > MAX_HOST:
        return 'must be a host name like "app.example.com", or "*.example.com" for its subdomains'
    return None


def rule_path_problem(raw: object) -> str | None:
    """Why ``raw`` cannot be a rule's path prefix, or None."""
    if not isinstance(raw, str):
        return "must be a string"
    if "?" in raw or "#" in raw:
        return "has a query or fragment, which never take part: write the path alone"
    normal = normalize_path(raw)
    if normal is None:
        return 'must be a plain path starting with "/" (no encoded slash, backslash, ";" or dot segment)'
    if normal != raw or (raw.endswith("/") and raw != "/"):
        fixed = normal.rstrip("/") or "/"
        return f'is not in normal form: write "{fixed}" (prefixes already match on segment boundaries)'
    return None


def method_problem(raw: object) -> str | None:
    if not isinstance(raw, str) or not _METHOD.match(raw):
        return 'must be an upper-case HTTP method like "GET" or "POST"'
    return None


def shadowed_by(rules: AccessRules, index: int) -> int | None:
    """The earlier rule that matches every request rule ``index`` matches, so ``index`` never
    decides anything; None when there is none. Conservative: it reports only certain shadows."""
    later = rules.rules[index]
    for i, earlier in enumerate(rules.rules[:index]):
        if not all(any(_host_covers(e, h) for e in earlier.hosts) for h in later.hosts):
            continue
        if earlier.paths and not (later.paths and all(any(path_matches(e, p) for e in earlier.paths)
                                                      for p in later.paths)):
            continue
        if earlier.methods and not (later.methods and later.methods <= earlier.methods):
            continue
        if earlier.names_someone:
            # Only a rule naming a subset of the same people can be shadowed by one naming people.
            if not later.names_someone or not (later.users <= earlier.users and later.groups <= earlier.groups):
                continue
        return i
    return None


def _host_covers(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if host.startswith("*."):
        return pattern.startswith("*.") and host[1:].endswith(pattern[1:])
    return host_matches(pattern, host)


def wide_bypass(rule: Rule) -> str | None:
    """Why a bypass rule opens more than part of one host, or None."""
    if rule.policy != BYPASS:
        return None
    if any(h.startswith("*.") for h in rule.hosts):
        return "bypasses every subdomain of a domain"
    if not rule.paths or "/" in rule.paths:
        return "bypasses a whole host (give it paths)"
    return None
