"""Properties of the access decision (authsvc.rules.access) over random rule sets and paths.

The one that matters: for any rule set, the decision on any spelling of a path (escapes of
unreserved characters in any case, repeated slashes, ``.`` segments, ``x/..`` detours, a query, a
fragment, encoded slashes and dots, path parameters) equals the decision on its normal form, or
is deny. So no spelling reaches an app that its normal form would not.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from authsvc.rules.access import (
    DENY,
    POLICIES,
    AccessRules,
    Rule,
    decide,
    fold_path,
    normalize_path,
)

HOST = "app.example.com"
# Mostly a few names, so random rules and random paths meet; sometimes any unreserved text.
SEGMENT = st.one_of(st.sampled_from(["a", "b", "admin", "public", "x.y", "~u", "a-b_c"]),
                    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=6).filter(
                        lambda s: s not in (".", "..")))
normal_paths = st.lists(SEGMENT, max_size=5).map(lambda segs: "/" + "/".join(segs))
users = st.sampled_from([None, "alice", "bob"])
groups = st.sets(st.sampled_from(["admins", "ops"]), max_size=2)
factors = st.sampled_from([("pwd",), ("pwd", "otp", "mfa")])
methods = st.sampled_from(["GET", "POST", "DELETE"])


@st.composite
def rules(draw) -> AccessRules:
    made = []
    for _ in range(draw(st.integers(0, 5))):
        paths = tuple(draw(st.lists(normal_paths.filter(lambda p: p == "/" or not p.endswith("/")),
                                    min_size=draw(st.sampled_from([0, 1, 1])), max_size=2)))
        made.append(Rule(
            hosts=(draw(st.sampled_from([HOST, HOST, HOST, "*.example.com", "other.example.com"])),),
            policy=draw(st.sampled_from(POLICIES)),
            paths=paths,
            methods=frozenset(draw(st.sets(methods, max_size=2)) if draw(st.booleans()) else ()),
            groups=frozenset(draw(st.sets(st.sampled_from(["admins", "ops"]), max_size=1))
                             if draw(st.integers(0, 3)) == 0 else ()),
            users=frozenset(draw(st.sets(st.sampled_from(["alice"]), max_size=1)) if draw(st.integers(0, 3)) == 0 else ())))
    return AccessRules(draw(st.sampled_from(["deny", "one_factor", "two_factor"])), tuple(made))


BENIGN = ["", "", "", "/", "./", "zz/../"]
HOSTILE = ["%2e/", "%2e%2e/", "..%2f", "x%2f..%2f", "%2F", ";p/", "%5c", "..%5C", "%252f", "%252e%252e/", "%00", "\\"]


@st.composite
def spelling(draw, path: str) -> str:
    """Another spelling of ``path`` that a server may receive for it: escapes of its characters in
    either case and detours (``//``, ``./``, ``zz/..``) anywhere, and at most one hostile piece
    (an encoded slash, backslash or dot segment, a double encoding, a path parameter, a NUL), so
    that each hostile piece is tried on paths the rules match."""
    segments = path.split("/")[1:]
    hostile_at = draw(st.one_of(st.none(), st.integers(0, max(0, len(segments) - 1))))
    out = []
    for index, segment in enumerate(segments):
        chars = []
        for c in segment:
            if draw(st.integers(0, 3)) == 0:
                chars.append("%" + draw(st.sampled_from(["{:02x}", "{:02X}"])).format(ord(c)))
            else:
                chars.append(c)
        prefix = draw(st.sampled_from(BENIGN))
        if index == hostile_at:
            prefix = draw(st.sampled_from(HOSTILE)) + prefix
        out.append(prefix + "".join(chars))
    tail = draw(st.sampled_from(["", "?a=/admin", "#/x", "?%2f..", ""]))
    return "/" + "/".join(out) + tail


def near(access: AccessRules):
    """Paths the rules care about: a rule's path, or one below it, or a random one. Random rules and
    random paths alone would seldom meet, and the property would hold for want of a match."""
    prefixes = sorted({p for rule in access.rules for p in rule.paths}) or ["/"]
    below = st.tuples(st.sampled_from(prefixes), st.lists(SEGMENT, max_size=2)).map(
        lambda t: (t[0].rstrip("/") + "".join("/" + s for s in t[1])) or "/")
    return st.one_of(below, below, normal_paths)


@given(rules(), methods, users, groups, factors, st.data())
def test_any_spelling_decides_as_the_normal_form_or_is_denied(access, method, user, member_of, used, data):
    path = data.draw(near(access))
    raw = data.draw(spelling(path))
    normal = normalize_path(raw)
    expected = decide(access, HOST, normalize_path(path), method, user, member_of, used)
    got = decide(access, HOST, raw, method, user, member_of, used)
    assert got == expected or got.verdict == DENY, (raw, normal, got, expected)


@st.composite
def case_insensitive_spelling(draw, path: str) -> str:
    """Another spelling of ``path`` that a case-insensitive server (Express by default, IIS, a
    case-insensitive disk) serves as ``path``: letters in any case, segments with trailing dots and
    spaces (which Windows drops), NTFS's ``::$DATA``, segments of dots alone."""
    out = []
    for segment in path.split("/")[1:]:
        chars = "".join(c.upper() if draw(st.booleans()) else c for c in segment)
        if draw(st.integers(0, 3)) == 0:
            chars += "".join(draw(st.lists(st.sampled_from([".", "%20", "::$DATA"]), min_size=1, max_size=3)))
        if draw(st.integers(0, 7)) == 0:
            out.append("...")
        out.append(chars)
    return "/" + "/".join(out)


@given(rules(), methods, users, groups, factors, st.data())
def test_a_case_insensitive_servers_spelling_decides_as_the_path_or_is_denied(access, method, user, member_of,
                                                                               used, data):
    """The rules' paths are written in lower case here (as rule_path_problem's examples are); a
    server reading paths without regard to case or trailing dots serves ``path`` for ``raw``, so
    ``raw`` must get ``path``'s decision or be denied: never another rule's, never the default's."""
    path = data.draw(near(access))
    raw = data.draw(case_insensitive_spelling(path))
    assert fold_path(normalize_path(raw)) == fold_path(path), raw  # the server really reads it as path
    expected = decide(access, HOST, path, method, user, member_of, used)
    got = decide(access, HOST, raw, method, user, member_of, used)
    assert got == expected or got.verdict == DENY, (raw, got, expected)


@given(normal_paths)
def test_fold_path_is_idempotent_and_keeps_the_normal_form(path):
    folded = fold_path(path)
    assert fold_path(folded) == folded and normalize_path(folded) == folded


@given(normal_paths, st.data())
def test_any_spelling_normalizes_to_the_same_path_or_is_ambiguous(path, data):
    """The rule-independent core of the property above: no spelling reads as another path."""
    raw = data.draw(spelling(path))
    assert normalize_path(raw) in (None, normalize_path(path)), raw


@given(st.text(max_size=40))
def test_normal_forms_are_fixed_points_and_never_raise(raw):
    normal = normalize_path(raw)
    if normal is not None:
        assert normalize_path(normal) == normal
        assert normal.startswith("/") and "//" not in normal and "/../" not in normal + "/"


@given(rules(), st.text(max_size=30), methods, users)
def test_decide_never_raises_and_names_a_real_rule(access, path, method, user):
    decision = decide(access, HOST, path, method, user, (), ("pwd",))
    assert decision.rule is None or 0 <= decision.rule < len(access.rules)
