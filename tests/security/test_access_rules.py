"""Access-rule threat list: what a client can do to the path, host and method a rule is matched on.

The decision (authsvc.rules.access.decide) is matched on the request as the app will see it. The
peers' advisories of 2023-2026 (../shared/reference/peers-2026.md) are mostly this seam: a rule
matched on "/admin" while the app served "/%61dmin", "//admin", "/admin;x" or "/public/..%2fadmin";
a host rule matched case-sensitively or with its trailing dot; "*.example.com" matching
"evil-example.com". Every hostile spelling below either decides as its normal form does, or is
denied; none reaches an app a rule closes. Group names follow the username rule (look-alikes,
commas, whitespace and control characters refused).
"""

from __future__ import annotations

import pytest

from authsvc.rules.access import (
    ALLOW,
    BYPASS,
    DENY,
    LOGIN,
    STEP_UP,
    AccessRules,
    Decision,
    Rule,
    decide,
    fold_path,
    for_the_account,
    normalize_host,
    normalize_path,
    path_matches,
    rule_host_problem,
    rule_path_problem,
    shadowed_by,
    wide_bypass,
)
from authsvc.rules.groups import format_groups, group_problem, normalize_group

ADMIN = "admin.example.com"
APP = "app.example.com"
MFA = ("pwd", "otp", "mfa")
PWD = ("pwd",)

RULES = AccessRules("one_factor", (
    Rule((APP,), "bypass", paths=("/public",)),                                  # 0
    Rule((APP,), "deny", paths=("/admin",)),                                     # 1
    Rule((ADMIN,), "two_factor", groups=frozenset({"admins"})),                  # 2
    Rule((ADMIN,), "deny"),                                                      # 3
    Rule(("*.internal.example.com",), "one_factor", users=frozenset({"alice"})),  # 4
    Rule(("*.internal.example.com",), "deny"),                                   # 5
    Rule((APP,), "deny", paths=("/api",), methods=frozenset({"DELETE"})),         # 6
))


def on_app(path: str, method: str = "GET", user: str | None = "bob", groups=(), methods=PWD) -> Decision:
    return decide(RULES, APP, path, method, user, groups, methods)


# --- paths: the app's reading, or deny -----------------------------------------------------------

@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("path", [
    "/admin", "/admin/", "/admin/x", "/admin?x=1", "/admin#frag", "/admin/x/../y",
    "//admin", "///admin//x", "/./admin", "/x/../admin", "/../admin", "/../../admin/x",
    "/%61dmin", "/%61%64%6D%69%6E", "/adm%69n/", "/%41dmin".replace("%41", "%61"),
    "/public/../admin", "/public/./../admin/x", "/public//../admin",
])
def test_spellings_of_a_denied_path_are_denied(path):
    decision = on_app(path)
    assert decision.verdict == DENY, (path, decision)


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("path", [
    "/admin%2fx", "/admin%2Fx", "/public%2f..%2fadmin", "/public/..%2fadmin", "/public/..%2Fadmin",
    "/public%5c..%5cadmin", "/public%5C..%5Cadmin", "/public\\..\\admin", "/public/..\\admin",
    "/public/%2e%2e/admin", "/public/%2E%2E/admin", "/public/.%2e/admin", "/public/%2e./admin",
    "/public/%2e/admin", "/public%252f..%252fadmin", "/public/%252e%252e/admin", "/public%25252fx",
    "/public;/../admin", "/public;jsessionid=x/../admin", "/public/..;/admin", "/admin;x", "/public;x",
    "/public%00/../admin", "/public/%00", "/public/%0a", "/public/%0D%0Aset-cookie:x", "/public/%7f",
    "/public/%", "/public/%g1", "/public/%2", "/public/x%",
    # A "#" in the target: nginx passes it on in the path and Go's server reads "/public#/../admin"
    # as "/admin" (found by review, session 14), while a reading that cuts the fragment sees "/public".
    "/public#/admin", "/public#/../admin/x", "/public#/%2e%2e/admin", "/public/x#", "#/public",
    "/public/\x00", "/public/\r\n", "/public/\t", "/public/ x", "/public/\x7f", "/public/é", "/public/\u202e",
    "public", "", "*", "http://app.example.com/public",
    "/public/" + "a" * 9000,
])
def test_ambiguous_paths_on_a_host_with_path_rules_are_denied(path):
    decision = on_app(path, user=None)
    assert decision == Decision(DENY, None, "ambiguous_path"), path


@pytest.mark.parametrize("path", ["/public", "/public/", "/public/x", "/public/x/y.css", "/public?next=/admin",
                                  "/%70ublic/x", "//public", "/public/./x", "/x/../public"])
def test_bypass_paths_let_the_anonymous_through(path):
    assert on_app(path, user=None) == Decision(BYPASS, 0, "rule"), path


@pytest.mark.parametrize("path", ["/publicity", "/public-x", "/publi", "/x/public", "/Publicity", "/x/PUBLIC",
                                  "/administrator", "/admin-panel", "/adminx", "/ADMINISTRATOR", "/admin.x",
                                  "/admin-.", "/.admin", "/%20admin", "/x/admin."])
def test_prefixes_match_on_segment_boundaries(path):
    assert on_app(path).verdict == ALLOW, path


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("path", [
    "/ADMIN", "/Admin/x", "/aDmIn", "/%41dmin", "/%41DMIN/x", "/admin.", "/admin./x", "/admin.../x", "/admin%20",
    "/admin%20/x", "/admin.%20.", "/admin%2e", "/x/../ADMIN", "/Public", "/PUBLIC/x", "/public.", "/public%20/x",
    "/.../admin", "/.../.../admin/y", "/admin::$DATA", "/admin::$data/x", "/Admin.::$DATA",
])
def test_a_path_that_reaches_a_rule_only_read_case_insensitively_is_ambiguous(path):
    """Express (by default), IIS and files on a case-insensitive disk serve "/admin" for "/ADMIN",
    and IIS for "/admin." and "/admin%20" too (Windows drops trailing dots and spaces from names).
    Such a path is denied on a host with path rules: neither the deny rule nor the bypass rule can
    be sidestepped by spelling, and no guess is made about which the app is."""
    for user in (None, "bob"):
        assert on_app(path, user=user) == Decision(DENY, None, "ambiguous_path"), (path, user)


def test_a_rule_written_with_capitals_holds_for_its_own_spelling_and_denies_the_others():
    rules = AccessRules("one_factor", (Rule((APP,), "bypass", paths=("/Static",)),))
    assert decide(rules, APP, "/Static/a.css", "GET", None, (), ()) == Decision(BYPASS, 0, "rule")
    for path in ("/static/a.css", "/STATIC", "/Static./a.css"):
        assert decide(rules, APP, path, "GET", None, (), ()) == Decision(DENY, None, "ambiguous_path"), path
    assert decide(rules, APP, "/other", "GET", None, (), ()).verdict == LOGIN


@pytest.mark.parametrize(("normal", "folded"), [
    ("/", "/"), ("/a/B", "/a/b"), ("/A/", "/a/"), ("/a./b", "/a/b"), ("/a%20/b", "/a/b"), ("/a.%20.", "/a"),
    ("/.../a", "/a"), ("/a/...", "/a/"), ("/a.b/c", "/a.b/c"), ("/.a", "/.a"), ("/a%20b", "/a%20b"),
    ("/%C3%A9", "/%c3%a9"), ("/a::$DATA", "/a"), ("/a::$DATA/b", "/a/b"), ("/a::$x", "/a::$x"),
])
def test_fold_path(normal, folded):
    assert fold_path(normal) == folded


def test_the_query_never_takes_part_and_a_fragment_before_it_is_ambiguous():
    assert on_app("/x?/admin").verdict == ALLOW
    assert on_app("/x?a#/admin").verdict == ALLOW   # after the "?": part of the query
    assert on_app("/x#/admin") == Decision(DENY, None, "ambiguous_path")
    assert on_app("/admin?/public").verdict == DENY
    assert on_app("/public?%2f..%2fadmin", user=None).verdict == BYPASS


RESERVED = AccessRules("one_factor", (
    Rule((APP,), "deny", paths=("/notes/@admin", "/api/jobs:purge", "/$batch", "/a!b", "/x=y,z")),
))


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("path", [
    "/notes/%40admin/x", "/notes/%40ADMIN", "/api/jobs%3Apurge", "/api/jobs%3apurge", "/%24batch", "/%24batch/x",
    "/a%21b", "/x%3Dy%2Cz", "/x=y%2cz", "/notes/@admin", "/api/jobs:purge", "/notes/%40admin::$DATA",
])
def test_an_escaped_reserved_character_is_the_character_to_a_rule(path):
    # Apps decode "%40" to "@", "%3A" to ":" (Werkzeug, Django, Express, Go): a rule on "/notes/@admin"
    # was matched only as written, so "/notes/%40admin/x" got the default (found by review, session 14).
    assert decide(RESERVED, APP, path, "GET", "bob", (), PWD).verdict == DENY, path


@pytest.mark.parametrize("path", ["/notes/%40admin", "/api/jobs%3Apurge", "/%24batch"])
def test_a_rule_path_with_an_escaped_reserved_character_is_asked_for_as_the_character(path):
    assert "not in normal form" in rule_path_problem(path)


def test_a_host_without_path_rules_does_not_judge_the_path():
    rules = AccessRules("one_factor", (Rule((ADMIN,), "two_factor"),))
    assert decide(rules, APP, "/x%2fy;z", "GET", "bob", (), PWD).verdict == ALLOW
    assert decide(rules, ADMIN, "/x%2fy;z", "GET", "bob", (), MFA).verdict == ALLOW


@pytest.mark.parametrize(("raw", "normal"), [
    ("/", "/"), ("/a//b", "/a/b"), ("/a/./b", "/a/b"), ("/a/../b", "/b"), ("/a/..", "/"), ("/a/.", "/a/"),
    ("/..", "/"), ("/a/b/../../..", "/"), ("/%61", "/a"), ("/%7e%7E", "/~~"), ("/%c3%a9", "/%C3%A9"),
    ("/a%20b", "/a%20B".replace("B", "b")), ("/a?b", "/a"), ("/a?b#c", "/a"), ("/a#b", None), ("/a/", "/a/"), ("//", "/"),
    ("/a%2e/b", "/a./b"), ("/100%25", "/100%25"), ("/%40%3a%24%21%2C%3D%2B%26%27%28%29%2A", "/@:$!,=+&'()*"),
    ("/a%3Fb", "/a%3Fb"), ("/a%23b", "/a%23b"), ("/a%3bb", "/a%3Bb"), ("/a%25b", "/a%25b"),
])
def test_normal_forms(raw, normal):
    assert normalize_path(raw) == normal


def test_path_prefixes_match_on_segment_boundaries():
    assert path_matches("/admin", "/admin") and path_matches("/admin", "/admin/") and path_matches("/admin", "/admin/x")
    assert not path_matches("/admin", "/administrator") and not path_matches("/admin", "/adm")
    assert path_matches("/", "/anything")


# --- hosts ----------------------------------------------------------------------------------------

@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("host", ["admin.example.com", "ADMIN.EXAMPLE.COM", "Admin.Example.Com",
                                  "admin.example.com.", "ADMIN.example.com.", "admin.example.com:443",
                                  "admin.example.com.:8443"])
def test_spellings_of_a_host_reach_its_rules(host):
    assert decide(RULES, host, "/", "GET", "bob", (), MFA) == Decision(DENY, 3, "rule")
    assert decide(RULES, host, "/", "GET", "carol", ("admins",), MFA) == Decision(ALLOW, 2, "rule")


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("host", [
    "аdmin.example.com",            # Cyrillic a
    "admin.examplе.com",            # Cyrillic e
    "ａｄｍｉｎ.example.com",        # full-width
    "admin\u200b.example.com",      # zero-width space
    "admin.example.com..", "admin..example.com", ".admin.example.com", "admin.example.com\x00",
    "admin.example.com\r\nx: y", "admin example.com", "user@admin.example.com", "admin.example.com@evil",
    "[::1]", "admin.example.com:", "admin.example.com:99999999", "", None, "a" * 300,
    "admin.example.com\\@evil", "admin.example.com%2e", "-admin.example.com",
])
def test_unreadable_hosts_are_denied_when_rules_exist(host):
    assert decide(RULES, host, "/", "GET", "carol", ("admins",), MFA) == Decision(DENY, None, "unknown_request")


@pytest.mark.parametrize(("host", "verdict"), [
    ("a.internal.example.com", ALLOW), ("A.B.Internal.Example.Com.", ALLOW),
    ("internal.example.com", ALLOW),          # not a subdomain: the default (one_factor)
    ("evil-internal.example.com", ALLOW),     # not a subdomain either
    ("internal.example.com.evil.com", ALLOW),
])
def test_a_wildcard_matches_subdomains_only(host, verdict):
    alice = decide(RULES, host, "/", "GET", "alice", (), PWD)
    bob = decide(RULES, host, "/", "GET", "bob", (), PWD)
    assert alice.verdict == verdict
    wildcard = host.lower().rstrip(".").endswith(".internal.example.com")
    assert bob == (Decision(DENY, 5, "rule") if wildcard else Decision(ALLOW, None, "default")), host


def test_normal_hosts():
    assert normalize_host("App.Example.COM.:443") == "app.example.com"
    assert normalize_host("xn--80ak6aa92e.com") == "xn--80ak6aa92e.com"
    assert normalize_host("app.example.com..") is None


# --- methods, users, groups, factors --------------------------------------------------------------

@pytest.mark.parametrize(("method", "verdict"), [("DELETE", DENY), ("GET", ALLOW), ("POST", ALLOW)])
def test_a_method_rule_matches_its_methods_only(method, verdict):
    assert on_app("/api/items", method).verdict == verdict


@pytest.mark.parametrize("method", ["", "delete", "DEL ETE", "DELETE\r\n", "GET,DELETE", "X" * 40, "D\x00"])
def test_a_method_the_proxy_described_as_nonsense_is_denied_on_hosts_with_method_rules(method):
    assert on_app("/api/items", method.upper() if method == "delete" else method).verdict in (DENY,)


def test_an_anonymous_request_reaching_a_rule_that_names_people_is_sent_to_sign_in():
    assert decide(RULES, ADMIN, "/", "GET", None) == Decision(LOGIN, 2, "who_is_asking")


def test_group_membership_decides_and_a_non_member_falls_through_to_the_next_rule():
    assert decide(RULES, ADMIN, "/", "GET", "carol", ("admins",), MFA) == Decision(ALLOW, 2, "rule")
    assert decide(RULES, ADMIN, "/", "GET", "carol", ("admins-x", "ADMINS", "admins "), MFA) == Decision(DENY, 3, "rule")


@pytest.mark.asvs("V6.3.3")
def test_two_factor_with_a_one_factor_session_asks_for_the_second_step():
    assert decide(RULES, ADMIN, "/", "GET", "carol", ("admins",), PWD) == Decision(STEP_UP, 2, "rule")
    # A list that claims mfa without the factors that earn it is not multi-factor.
    assert decide(RULES, ADMIN, "/", "GET", "carol", ("admins",), ("pwd", "mfa")).verdict == STEP_UP
    assert decide(RULES, ADMIN, "/", "GET", "carol", ("admins",), ("hwk", "user", "mfa")).verdict == ALLOW


def test_no_rules_is_the_behaviour_before_rules_whatever_the_request():
    for host, path in [(None, None), ("аdmin", "/%2f"), (APP, "/admin")]:
        assert decide(AccessRules(), host, path, "", "bob") == Decision(ALLOW, None, "no_rules")
        assert decide(AccessRules(), host, path, "", None) == Decision(LOGIN, None, "no_rules")


@pytest.mark.parametrize(("default", "signed_in", "anonymous"), [
    ("deny", DENY, DENY), ("one_factor", ALLOW, LOGIN), ("two_factor", STEP_UP, LOGIN)])
def test_the_default_decides_what_no_rule_matches(default, signed_in, anonymous):
    rules = AccessRules(default, (Rule((ADMIN,), "deny"),))
    assert decide(rules, APP, "/", "GET", "bob", (), PWD) == Decision(signed_in, None, "default")
    assert decide(rules, APP, "/", "GET", None).verdict == anonymous


def test_first_match_wins():
    rules = AccessRules("deny", (Rule((APP,), "one_factor"), Rule((APP,), "deny")))
    assert decide(rules, APP, "/", "GET", "bob", (), PWD) == Decision(ALLOW, 0, "rule")


# --- rule values refused at start-up ------------------------------------------------------------

@pytest.mark.parametrize("host", ["Admin.example.com", "admin.example.com.", "admin.example.com:443", "аdmin.example.com",
                                  "localhost", "*", "*.com.", "a.*.example.com", "", "admin example.com", 7,
                                  "*example.com", "admin.example.com/x"])
def test_rule_hosts_not_in_normal_form_are_refused(host):
    assert rule_host_problem(host)


@pytest.mark.parametrize("path", ["admin", "/admin/", "//admin", "/%61dmin", "/admin?x", "/admin#x", "/a/../b",
                                  "/admin%2f", "/admin;x", "/admin\\", "", 3])
def test_rule_paths_not_in_normal_form_are_refused(path):
    assert rule_path_problem(path)


def test_lints_shadowed_rules_and_wide_bypasses():
    rules = AccessRules("one_factor", (
        Rule(("*.example.com",), "deny"), Rule((APP,), "bypass", paths=("/x",)),
        Rule((ADMIN,), "one_factor", groups=frozenset({"a"})), Rule(("b.example.org",), "bypass")))
    assert shadowed_by(rules, 1) == 0 and shadowed_by(rules, 2) == 0 and shadowed_by(rules, 3) is None
    assert wide_bypass(rules.rules[3]) and wide_bypass(Rule(("*.example.org",), "bypass", paths=("/x",)))
    assert wide_bypass(rules.rules[1]) is None
    narrower = AccessRules("one_factor", (Rule((APP,), "deny", paths=("/a/b",)), Rule((APP,), "deny", paths=("/a",))))
    assert shadowed_by(narrower, 1) is None  # /a is wider than /a/b
    people = AccessRules("one_factor", (Rule((APP,), "deny", users=frozenset({"x"})), Rule((APP,), "deny")))
    assert shadowed_by(people, 1) is None  # the first names people; the second decides for everyone else


# --- group names ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "name"), [("Admins", "admins"), ("ＡＤＭＩＮＳ", "admins"), (" ops ", "ops"),
                                             ("ﬁnance", "finance"), ("team.a_b-c", "team.a_b-c")])
def test_group_names_have_one_normal_form(typed, name):
    assert group_problem(typed) is None and normalize_group(typed) == name


@pytest.mark.parametrize("raw", ["", " ", "a,b", "a b", "a\tb", "a\nb", "a\x00", "a\x1b[31m", "аdmins", "admins\u200b",
                                 "admins\u202e", "-admins", ".admins", "a@b", "a+b", "a/b", "a" * 65, "a" + "\u0301" * 40,
                                 "é", "ad;mins", "ad\"mins"])
def test_group_names_refuse_separators_whitespace_control_characters_and_look_alikes(raw):
    assert group_problem(raw)


def test_groups_header_value_is_sorted_and_comma_separated():
    assert format_groups(["ops", "admins"]) == "admins,ops" and format_groups([]) == ""


# --- for_the_account: a step-up the account cannot take ------------------------------------------

@pytest.mark.asvs("V6.3.3")
@pytest.mark.parametrize("rule", [None, 0, 7])
def test_a_step_up_an_account_cannot_take_is_a_deny_naming_no_second_factor(rule):
    stepped = Decision(STEP_UP, rule, "rule")
    assert for_the_account(stepped, can_step_up=False) == Decision(DENY, rule, "no_second_factor")
    assert for_the_account(stepped, can_step_up=True) is stepped


@pytest.mark.parametrize("verdict", [ALLOW, BYPASS, DENY, LOGIN])
@pytest.mark.parametrize("can_step_up", [False, True])
def test_every_other_decision_is_the_same_for_every_account(verdict, can_step_up):
    decision = Decision(verdict, 3, "rule")
    assert for_the_account(decision, can_step_up) is decision
