"""Open-redirect threat list for authsvc.rules.redirects.validate_next.

Each hostile input below fooled some real validator (oauth2-proxy, Django, Flask-Security-Too,
Keycloak, mod_auth_mellon, ...) or is a sibling of one that did. Each must come back rejected,
with the default page as target and a stable reason code. The good inputs pin the re-serialized
Location we send instead of the raw value.

The same payloads seed tests/property/corpus/redirects.txt, which the property tests replay.
"""

from __future__ import annotations

import ast
import pathlib
import sys
import time

import pytest

from authsvc.rules.redirects import (
    AllowedApp,
    RedirectDecision,
    RedirectRules,
    build_rules,
    parse_origin,
    validate_next,
)

DEFAULT = "/welcome"
WIKI = AllowedApp("https://app.example.com", "/wiki", "Wiki")
GRAFANA = AllowedApp("https://grafana.example.com:8443", "/", "Grafana")
RULES = build_rules("https://auth.example.com", [WIKI, GRAFANA], default=DEFAULT)
DEV_RULES = build_rules("http://127.0.0.1:8000", [WIKI])


def P(payload: str, reason: str, id: str):  # same shape as pytest.param
    return pytest.param(payload, reason, id=id)


def assert_rejected(payload, reason, rules=RULES):
    decision = validate_next(payload, rules)
    assert decision == RedirectDecision(target=rules.default, accepted=False, reason=reason), (
        f"{payload!r} -> {decision}"
    )


# --- Backslash and slash mixes: browsers treat "\" as "/" in http(s) URLs ------------------------
SLASH_TRICKS = [
    P("/\\evil.com", "backslash", "oauth2-proxy CVE-2020-5233 /\\host"),
    P("\\\\evil.com", "backslash", "django \\\\host"),
    P("\\\\\\evil.com", "backslash", "django \\\\\\host"),
    P("/\\\\/evil.com", "backslash", "django /\\\\/host"),
    P("\\\\//evil.com", "backslash", "django \\\\//host"),
    P("/\\/evil.com", "backslash", "django /\\/host"),
    P("\\/evil.com", "backslash", "django \\/host"),
    P("\\\\\\github.com", "backslash", "flask-security CVE-2021-32618"),
    P("/\\github.com", "backslash", "flask-security CVE-2023-49438 /\\"),
    P("\\/github.com", "backslash", "flask-security CVE-2023-49438 \\/"),
    P("/./\\evil.com", "backslash", "oauth2-proxy CVE-2020-4037 /./\\"),
    P("/./../../\\evil.com", "backslash", "oauth2-proxy CVE-2020-4037 /./../../\\"),
    P("/test\\..\\", "backslash", "keycloak /test\\..\\"),
    P("///\\;@evil.com", "backslash", "oauth2-proxy ///\\;@"),
    P("https://amazon.com\\.lp.com", "backslash", "flask-security GHSA-w2j7 host\\.suffix"),
    P("https://jwag:mypass@amazon.com\\.lp.com", "backslash", "flask-security GHSA-w2j7 userinfo"),
    P("https://app.example.com\\@evil.com", "backslash", "allowed host then \\@"),
    P("https://app.example.com\\.evil.com/wiki", "backslash", "allowed host then \\.suffix"),
    P("http:\\\\\\djangoproject.com", "backslash", "django CVE-2014-3730"),
    P("http://mysite.example.com\\@attacker.com", "backslash", "django CVE-2016-2512"),
    P("http:/\\//example.com", "backslash", "django http:/\\//"),
    P("http:\\/example.com", "backslash", "django http:\\/"),
    P("http:/\\example.com", "backslash", "django http:/\\"),
    P("http://otherserver\\@example.com", "backslash", "django otherserver\\@"),
    P("http:\\\\testserver\\@example.com", "backslash", "django http:\\\\testserver\\@"),
    P("http://testserver\\me:pass@example.com", "backslash", "django testserver\\me:pass@"),
    P("http://testserver\\@example.com", "backslash", "django testserver\\@"),
    P("http:\\\\testserver\\confirm\\me@example.com", "backslash", "django \\confirm\\me@"),
    P("https:\\\\app.example.com/wiki", "backslash", "https:\\\\ allowed host"),
    P("/wiki/page\\", "backslash", "trailing backslash"),
    P("//evil.com", "scheme_relative", "scheme-relative //host"),
    P("///evil.com", "scheme_relative", "triple slash"),
    P("/////github.com", "scheme_relative", "flask-security /////"),
    P("//;@google.com", "scheme_relative", "oauth2-proxy //;@"),
    P("//example.com@google.com", "scheme_relative", "oauth2-proxy //host@host"),
    P("//google%00.com", "scheme_relative", "oauth2-proxy //google%00.com"),
    P("//google%E3%80%82com", "scheme_relative", "oauth2-proxy ideographic full stop encoded"),
    P("//app.example.com/wiki", "scheme_relative", "scheme-relative to an allowed app"),
    P("//auth.example.com/account", "scheme_relative", "scheme-relative to own host"),
]

# --- Whitespace and control characters: browsers strip or delete them, changing the meaning ------
WHITESPACE_AND_CONTROLS = [
    P("/ /evil.com", "whitespace", "oauth2-proxy CVE-2020-11053 space"),
    P("/\t/evil.com", "control_char", "oauth2-proxy CVE-2020-11053 tab"),
    P("/\r\\evil.com", "control_char", "oauth2-proxy CR backslash"),
    P("/\n\\evil.com", "control_char", "oauth2-proxy LF backslash"),
    P("/\v\\evil.com", "control_char", "oauth2-proxy VT backslash"),
    P("/\t\t/\t/evil.com", "control_char", "oauth2-proxy CVE-2020-4037 tabs"),
    P("/\t/\t\\evil.com", "control_char", "oauth2-proxy CVE-2020-4037 tab backslash"),
    P("/\t/evil.example", "control_char", "punk-oauth2 tab"),
    P("%20\\\\\\\\github.com", "backslash", "flask-security %20\\\\\\\\ literal"),
    P(" \\\\\\\\github.com", "whitespace", "flask-security %20\\\\\\\\ decoded"),
    P("%20///github.com", "malformed", "flask-security %20/// literal"),
    P(" ///github.com", "whitespace", "flask-security %20/// decoded"),
    P(" //github.com", "whitespace", "flask-security %20// decoded"),
    P("%19////github.com", "malformed", "flask-security %19//// literal"),
    P("\x19////github.com", "control_char", "flask-security %19//// decoded"),
    P("%E2%80%8A///github.com", "malformed", "flask-security hair space literal"),
    P("\u200a///github.com", "whitespace", "flask-security hair space decoded"),
    P("\njavascript:alert(x)", "control_char", "django CVE-2015-0220 leading LF"),
    P("\x08//example.com", "control_char", "django CVE-2015-2317 leading backspace"),
    P("%08//example.com", "malformed", "django CVE-2015-2317 encoded backspace"),
    P("\n", "control_char", "django lone LF"),
    P("/%09/evil.com", "control_char", "oauth2-proxy encoded tab"),
    P("/%09%09/evil.com", "control_char", "encoded double tab"),
    P("/%00", "control_char", "encoded NUL in path"),
    P("/account%0d%0aSet-Cookie:%20a=b", "control_char", "encoded CRLF header injection"),
    P("/account\r\nSet-Cookie:a=b", "control_char", "raw CRLF header injection"),
    P("/account\rLocation:https://evil.com", "control_char", "raw CR"),
    P("/\x00evil.com", "control_char", "raw NUL"),
    P("/account\x00", "control_char", "trailing NUL"),
    P("\x00https://app.example.com/wiki", "control_char", "leading NUL before allowed URL"),
    P("/\x7fevil.com", "control_char", "DEL"),
    P("/\x1f/evil.com", "control_char", "unit separator"),
    P("/\u0085/evil.com", "control_char", "NEL C1 control"),
    P("/\u009b/evil.com", "control_char", "CSI C1 control"),
    P("/\u00a0/evil.com", "whitespace", "no-break space"),
    P("/\u1680/evil.com", "whitespace", "ogham space mark"),
    P("/\u2000/evil.com", "whitespace", "en quad"),
    P("/\u2028/evil.com", "whitespace", "line separator"),
    P("/\u2029/evil.com", "whitespace", "paragraph separator"),
    P("/\u202f/evil.com", "whitespace", "narrow no-break space"),
    P("/\u3000/evil.com", "whitespace", "ideographic space"),
    P("/\u200b/evil.com", "control_char", "zero-width space"),
    P("/\u200d/evil.com", "control_char", "zero-width joiner"),
    P("/\ufeff/evil.com", "control_char", "byte order mark"),
    P("/\u180e/evil.com", "control_char", "mongolian vowel separator"),
    P("/\u202emoc.live/", "control_char", "right-to-left override"),
    P("/\ue000", "control_char", "private use char"),
    P("/\ud800", "control_char", "lone surrogate"),
    P("https://app.example.com/wiki\t", "control_char", "trailing tab after allowed URL"),
    P(" https://app.example.com/wiki", "whitespace", "leading space before allowed URL"),
    P("https://app.example.com/wiki ", "whitespace", "trailing space after allowed URL"),
    P("https://app.example.com/wiki\n", "control_char", "trailing LF after allowed URL"),
    P("https://app.exa\tmple.com/wiki", "control_char", "tab inside allowed host"),
    P("https:/\t/evil.com", "control_char", "tab between scheme slashes"),
    P("/a b", "whitespace", "space inside an own path"),
]

# --- Schemes other than https://, and schemes without exactly "//" ------------------------------
SCHEMES = [
    P("javascript:alert(1)", "scheme", "javascript"),
    P("JaVaScRiPt:alert(1)", "scheme", "javascript mixed case"),
    P("JAVASCRIPT:alert(1)", "scheme", "javascript upper case"),
    P("java\tscript:alert(1)", "control_char", "javascript with tab"),
    P("java\nscript:alert(1)", "control_char", "javascript with LF"),
    P("java\x00script:alert(1)", "control_char", "javascript with NUL"),
    P(" javascript:alert(1)", "whitespace", "javascript with leading space"),
    P("\x01javascript:alert(1)", "control_char", "javascript with leading C0"),
    P('javascript:alert("XSS")', "scheme", "django javascript XSS"),
    P("javascript://%0aalert(1)", "scheme", "javascript comment-newline"),
    P("javascript://app.example.com/wiki%0aalert(1)", "scheme", "javascript with allowed host"),
    P("javascript:https://app.example.com/wiki", "scheme", "javascript wrapping allowed URL"),
    P("data:,x", "scheme", "data minimal"),
    P("data:text/html,<script>alert(1)</script>", "scheme", "data html"),
    P("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "scheme", "data base64"),
    P("DATA:text/html,x", "scheme", "data upper case"),
    P("vbscript:msgbox(1)", "scheme", "vbscript"),
    P("file:///etc/passwd", "scheme", "file"),
    P("ftp://example.com", "scheme", "django ftp"),
    P("ftp:9999999999", "scheme", "django ftp numeric"),
    P("blob:https://app.example.com/uuid", "scheme", "blob"),
    P("intent://evil.com#Intent;scheme=https;end", "scheme", "android intent"),
    P("ws://app.example.com/wiki", "scheme", "websocket"),
    P("https+x://app.example.com/wiki", "scheme", "scheme with plus"),
    P("http:999999999", "no_authority", "django CVE-2017-7233 numeric"),
    P("https:evil.com", "no_authority", "scheme without slashes"),
    P("https:/evil.com", "no_authority", "scheme with one slash"),
    P("https:///evil.com", "no_authority", "scheme with three slashes"),
    P("https:////evil.com", "no_authority", "scheme with four slashes"),
    P("http:///example.com", "no_authority", "django empty authority"),
    P("http:www.malicious.com", "no_authority", "mod_auth_mellon CVE-2019-13038"),
    P("https:app.example.com/wiki", "no_authority", "allowed host without slashes"),
    P("https:", "no_authority", "bare scheme"),
    P("https://", "no_authority", "empty authority"),
    P("https://:443/wiki", "no_authority", "port without host"),
    P("https://?x", "no_authority", "query without host"),
    P("https://#x", "no_authority", "fragment without host"),
    P("https:evil.com:80", "no_authority", "scheme host port without slashes"),
]

# --- Userinfo: the allowed host is a username, the real host comes after "@" -------------------
USERINFO = [
    P("https://app.example.com@evil.com", "userinfo", "allowed host as username"),
    P("https://app.example.com%40evil.com", "userinfo", "encoded at sign"),
    P("https://app.example.com%40evil.com/wiki", "userinfo", "encoded at sign with path"),
    P("https://app.example.com:443@evil.com", "userinfo", "allowed host and port as userinfo"),
    P("https://user:pass@app.example.com/wiki", "userinfo", "credentials on allowed host"),
    P("https://@app.example.com/wiki", "userinfo", "empty userinfo"),
    P("https://test@something@test.com/path", "userinfo", "keycloak double at"),
    P("https://keycloak.org@other.com", "userinfo", "keycloak at"),
    P("https://keycloak.org%2F@other.com", "userinfo", "keycloak encoded slash then at"),
    P("https://keycloak.org%2Ftest%2F%40sample.com", "userinfo", "keycloak encoded at"),
    P("http://localhost:80@attacker", "userinfo", "keycloak CVE-2024-8883"),
    P("https://auth.example.com@evil.com/", "userinfo", "own host as username"),
    P("https://app.example.com%2540evil.com", "encoded_host", "double-encoded at sign"),
]

# --- Hosts that are not on the list, look-alikes and obfuscated IPs -----------------------------
HOSTS = [
    P("https://evil.com", "host_not_allowed", "plain evil host"),
    P("https://example.com", "host_not_allowed", "django other host"),
    P("https://evil.example/wiki", "host_not_allowed", "asvs evil.example"),
    P("https://app.example.com.evil.com/wiki", "host_not_allowed", "allowed host as prefix"),
    P("https://evilapp.example.com/wiki", "host_not_allowed", "allowed host as suffix"),
    P("https://evil-app.example.com/wiki", "host_not_allowed", "allowed host as hyphen suffix"),
    P("https://example.com/wiki", "host_not_allowed", "parent domain"),
    P("https://sub.app.example.com/wiki", "host_not_allowed", "subdomain of allowed host"),
    P("https://app.example.com./wiki", "host_not_allowed", "trailing dot host"),
    P("https://app.example.com../wiki", "host_not_allowed", "double trailing dot host"),
    P("https://.app.example.com/wiki", "host_not_allowed", "leading dot host"),
    P("https://app.example.com*/wiki", "host_not_allowed", "wildcard char in host"),
    P("https://xn--80ak6aa92e.com/", "host_not_allowed", "punycode homograph"),
    P("https://app.example.com:443.evil.com/wiki", "malformed", "port with suffix"),
    P("https://keycloak%2Eorg/test/", "encoded_host", "keycloak encoded dot host"),
    P("https://app%2Eexample.com/wiki", "encoded_host", "encoded dot in allowed host"),
    P("https://app.example.com%00.evil.com/wiki", "encoded_host", "encoded NUL in host"),
    P("https://%61pp.example.com/wiki", "encoded_host", "encoded letter in host"),
    P("https://app\uff0eexample.com/wiki", "non_ascii_host", "full-width full stop host"),
    P("https://app\u3002example.com/wiki", "non_ascii_host", "ideographic full stop host"),
    P("https://app\uff61example.com/wiki", "non_ascii_host", "halfwidth ideographic stop host"),
    P("https://app\u2024example.com/wiki", "non_ascii_host", "one dot leader host"),
    P("https://\uff41\uff50\uff50.example.com/wiki", "non_ascii_host", "full-width letters host"),
    P("https://\u0430pp.example.com/wiki", "non_ascii_host", "cyrillic a homograph"),
    P("https://b\u00fccher.example/", "non_ascii_host", "IDN host"),
    P("https://evil.com\uff0fapp.example.com/wiki", "non_ascii_host", "full-width solidus in host"),
    P("\uff0f\uff0fevil.com", "malformed", "full-width scheme-relative"),
    P("\uff48ttps://evil.com", "malformed", "full-width scheme letter"),
    P("https\uff1a//evil.com", "malformed", "full-width colon"),
    P("\uff4aavascript:alert(1)", "malformed", "full-width javascript"),
    P("http://0xd8.0x3a.0xd6.0xce", "scheme", "oauth2-proxy hex IPv4 over http"),
    P("https://0xd8.0x3a.0xd6.0xce", "host_not_allowed", "hex IPv4"),
    P("http://3627734734", "scheme", "oauth2-proxy decimal IPv4 over http"),
    P("https://3627734734", "host_not_allowed", "decimal IPv4"),
    P("http://00330.0x3a.54990", "scheme", "oauth2-proxy mixed IPv4 over http"),
    P("https://00330.0x3a.54990", "host_not_allowed", "mixed octal hex IPv4"),
    P("https://0x7f.1", "host_not_allowed", "short hex IPv4"),
    P("https://0177.0.0.1", "host_not_allowed", "octal IPv4"),
    P("https://2130706433", "host_not_allowed", "decimal loopback"),
    P("https://127.1", "host_not_allowed", "short loopback"),
    P("https://[::1]/", "host_not_allowed", "IPv6 loopback"),
    P("https://[::ffff:127.0.0.1]/", "host_not_allowed", "IPv4-mapped IPv6"),
    P("https://[fe80::1%25eth0]/", "encoded_host", "IPv6 zone id"),
    P("http://[2001:cdba:0000:0000:0000:0000:3257:9652/", "malformed", "django unclosed IPv6"),
    P("http://2001:cdba:0000:0000:0000:0000:3257:9652]/", "malformed", "django unopened IPv6"),
    P("https://[::1]x/", "malformed", "junk after IPv6"),
]

PORTS = [
    P("https://app.example.com:444/wiki", "port_not_allowed", "port 444"),
    P("https://app.example.com:444", "port_not_allowed", "port 444 no path"),
    P("https://app.example.com:0/wiki", "port_not_allowed", "port 0"),
    P("https://app.example.com:8443/wiki", "port_not_allowed", "another app's port"),
    P("https://app.example.com:99999/wiki", "port_not_allowed", "port out of range"),
    P("https://grafana.example.com/", "port_not_allowed", "default port for non-default app"),
    P("https://grafana.example.com:443/", "port_not_allowed", "explicit 443 for :8443 app"),
    P("https://auth.example.com:8443/", "port_not_allowed", "own host other port"),
    P("https://app.example.com:123456/wiki", "malformed", "six digit port"),
    P("https://app.example.com:/wiki", "malformed", "empty port"),
    P("https://app.example.com:443:443/wiki", "malformed", "two ports"),
    P("https://app.example.com:+443/wiki", "malformed", "signed port"),
    P("https://app.example.com:4_43/wiki", "malformed", "underscore port"),
    P("https://app.example.com:4\u0664\u0663/wiki", "malformed", "arabic-indic digit port"),
    P("https://app.example.com:\uff14\uff14\uff13/wiki", "malformed", "full-width digit port"),
]

DOWNGRADES = [
    P("http://app.example.com/wiki", "scheme", "http to allowed app"),
    P("HTTP://app.example.com/wiki", "scheme", "HTTP to allowed app"),
    P("http://app.example.com:443/wiki", "scheme", "http on 443"),
    P("http://grafana.example.com:8443/", "scheme", "http to app port"),
    P("http://auth.example.com/account", "scheme", "http to own host"),
    P("http://evil.com", "scheme", "http to evil host"),
]

# --- Paths that leave an app's prefix or smuggle separators ------------------------------------
PATHS = [
    P("https://app.example.com/wiki-evil", "path_not_allowed", "prefix without boundary hyphen"),
    P("https://app.example.com/wikix", "path_not_allowed", "prefix without boundary letter"),
    P("https://app.example.com/wiki.evil", "path_not_allowed", "prefix without boundary dot"),
    P("https://app.example.com/wiki;x", "path_not_allowed", "prefix without boundary semicolon"),
    P("https://app.example.com/WIKI", "path_not_allowed", "prefix in other case"),
    P("https://app.example.com/w%69ki", "path_not_allowed", "prefix with encoded letter"),
    P("https://app.example.com/wiki%3f", "path_not_allowed", "prefix with encoded question mark"),
    P("https://app.example.com/admin", "path_not_allowed", "other path on app host"),
    P("https://app.example.com/", "path_not_allowed", "app root"),
    P("https://app.example.com", "path_not_allowed", "app origin without path"),
    P("https://app.example.com?wiki", "path_not_allowed", "app origin with query"),
    P("https://app.example.com/wiki/../admin", "dot_segment", "dot-dot out of prefix"),
    P("https://app.example.com/wiki/./page", "dot_segment", "single dot segment"),
    P("https://app.example.com/wiki/..", "dot_segment", "trailing dot-dot"),
    P("https://app.example.com/wiki/..;/admin", "dot_segment", "tomcat ..;/"),
    P("https://app.example.com/wiki/..;x=y/admin", "dot_segment", "tomcat ..;param/"),
    P("https://app.example.com/wiki/%2e%2e/admin", "encoded_separator", "encoded dot-dot"),
    P("https://app.example.com/wiki/%2E%2E/admin", "encoded_separator", "encoded dot-dot upper"),
    P("https://app.example.com/wiki/.%2e/admin", "encoded_separator", "half-encoded dot-dot"),
    P("https://app.example.com/wiki/%252e%252e/admin", "encoded_separator", "double-encoded dot-dot"),
    P("https://app.example.com/wiki%2f..%2fadmin", "encoded_separator", "encoded slash traversal"),
    P("https://app.example.com/wiki/%5c../admin", "encoded_separator", "encoded backslash"),
    P("https://app.example.com/wiki//evil.com", "empty_segment", "double slash inside app path"),
    P("https://app.example.com/wiki/\u2025/admin", "lookalike", "two dot leader segment"),
    P("https://app.example.com/wiki/\uff0e\uff0e/admin", "lookalike", "full-width dot-dot"),
    P("https://app.example.com/wiki\uff0f..\uff0fadmin", "lookalike", "full-width slash traversal"),
    P("/wiki/../admin", "dot_segment", "own path dot-dot"),
    P("/..", "dot_segment", "own path bare dot-dot"),
    P("/.", "dot_segment", "own path bare dot"),
    P("/account/.", "dot_segment", "own path trailing dot"),
    P("/..;/admin", "dot_segment", "own path tomcat ..;/"),
    P("/wiki/%2e%2e/admin", "encoded_separator", "own path encoded dot-dot"),
    P("/test/%2E%2E/", "encoded_separator", "keycloak %2E%2E"),
    P("/test%5C..;/", "encoded_separator", "keycloak %5C..;"),
    P("/%2f%2fevil.com", "encoded_separator", "oauth2-proxy encoded slashes"),
    P("/%2F%2Fevil.com", "encoded_separator", "oauth2-proxy encoded slashes upper"),
    P("/%2F/evil.com", "encoded_separator", "encoded then raw slash"),
    P("/%5cevil.com", "encoded_separator", "oauth2-proxy encoded backslash"),
    P("/%5C%5Cevil.com", "encoded_separator", "encoded backslashes upper"),
    P("/%252f%252fevil.com", "encoded_separator", "double-encoded slashes"),
    P("/%255cevil.com", "encoded_separator", "double-encoded backslash"),
    P("/%25", "encoded_separator", "encoded percent"),
    P("/%", "malformed", "lone percent"),
    P("/%zz", "malformed", "percent with non-hex"),
    P("/%2", "malformed", "truncated escape"),
    P("/account//evil.com", "empty_segment", "double slash inside own path"),
    P("/\uff0f\uff0fevil.com", "lookalike", "full-width slashes in own path"),
    P("/\uff3c\uff3cevil.com", "lookalike", "full-width backslashes in own path"),
    P("/\uff05\uff12\uff46evil.com", "lookalike", "full-width percent"),
    P("/\ufe52\ufe52/admin", "lookalike", "small full stops"),
    P("/%EF%BC%8F%EF%BC%8Fevil.com", "lookalike", "encoded full-width slashes"),
    P("https://app.example.com/wiki/%e2%80%a5/admin", "lookalike", "encoded two dot leader"),
    P("https://app.example.com/wiki/%c0%ae%c0%ae/admin", "malformed", "overlong UTF-8 dot-dot"),
    P("/%c0%af%c0%afevil.com", "malformed", "overlong UTF-8 slashes"),
    P("/%ff", "malformed", "invalid UTF-8 byte"),
    P("/%ed%a0%80", "malformed", "encoded surrogate"),
]

# --- Not a path on our origin and not an absolute URL --------------------------------------------
RELATIVE = [
    P("evil.com", "malformed", "bare host"),
    P("evil.com/wiki", "malformed", "bare host with path"),
    P("view/?param=//example.com", "malformed", "django path-relative"),
    P("path/http:2222222222", "malformed", "django path-relative with colon"),
    P("./evil.com", "malformed", "dot relative"),
    P("../evil.com", "malformed", "dot-dot relative"),
    P("?next=https://evil.com", "malformed", "query only"),
    P("#https://evil.com", "malformed", "fragment only"),
    P("%2F%2Fevil.example", "malformed", "asvs encoded scheme-relative"),
    P("%2Fwiki", "malformed", "encoded leading slash"),
    P("1https://evil.com", "malformed", "scheme starting with digit"),
    P(":https://evil.com", "malformed", "leading colon"),
    P("-javascript:alert(1)", "malformed", "scheme starting with hyphen"),
]

MISSING = [
    P(None, "empty", "None"),
    P("", "empty", "empty string"),
    P(b"/account", "empty", "bytes instead of str"),
]

HOSTILE_FAMILIES = {
    "slash_tricks": SLASH_TRICKS,
    "whitespace_and_controls": WHITESPACE_AND_CONTROLS,
    "schemes": SCHEMES,
    "userinfo": USERINFO,
    "hosts": HOSTS,
    "ports": PORTS,
    "downgrades": DOWNGRADES,
    "paths": PATHS,
    "relative": RELATIVE,
}


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize(("payload", "reason"), SLASH_TRICKS)
def test_slash_and_backslash_tricks_are_refused(payload, reason):
    assert_rejected(payload, reason)


@pytest.mark.asvs("V3.7.2", "V1.2.2")
@pytest.mark.parametrize(("payload", "reason"), WHITESPACE_AND_CONTROLS)
def test_whitespace_and_control_char_smuggling_is_refused(payload, reason):
    assert_rejected(payload, reason)


@pytest.mark.asvs("V1.2.2")
@pytest.mark.parametrize(("payload", "reason"), SCHEMES)
def test_unsafe_or_slashless_schemes_are_refused(payload, reason):
    assert_rejected(payload, reason)


@pytest.mark.asvs("V3.7.2", "V3.7.3")
@pytest.mark.parametrize(("payload", "reason"), USERINFO)
def test_userinfo_host_confusion_is_refused(payload, reason):
    assert_rejected(payload, reason)


@pytest.mark.asvs("V3.7.2", "V3.7.3")
@pytest.mark.parametrize(("payload", "reason"), HOSTS)
def test_off_list_lookalike_and_obfuscated_hosts_are_refused(payload, reason):
    assert_rejected(payload, reason)


@pytest.mark.asvs("V3.7.2", "V3.7.3")
@pytest.mark.parametrize(("payload", "reason"), PORTS)
def test_off_list_ports_are_refused(payload, reason):
    assert_rejected(payload, reason)


@pytest.mark.asvs("V1.2.2", "V3.7.3")
@pytest.mark.parametrize(("payload", "reason"), DOWNGRADES)
def test_http_downgrade_is_refused(payload, reason):
    assert_rejected(payload, reason)


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize(("payload", "reason"), PATHS)
def test_path_prefix_escapes_and_encoded_separators_are_refused(payload, reason):
    assert_rejected(payload, reason)


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize(("payload", "reason"), RELATIVE)
def test_references_that_are_not_paths_or_absolute_urls_are_refused(payload, reason):
    assert_rejected(payload, reason)


@pytest.mark.parametrize(("payload", "reason"), MISSING)
def test_missing_next_falls_back_to_default(payload, reason):
    assert_rejected(payload, reason)


def test_kelvin_sign_cannot_lowercase_into_an_allowed_host():
    # "\u212a".lower() == "k": a validator that lowercases before the ASCII check would match.
    rules = build_rules("https://auth.example.com", [AllowedApp("https://kb.example.com")])
    assert validate_next("https://kb.example.com/", rules).accepted
    assert_rejected("https://\u212ab.example.com/", "non_ascii_host", rules)


# --- Length: a DoS guard that runs before anything else ---------------------------------------

LONG_INPUTS = [
    pytest.param("/" + "a" * 100_000, id="100k ascii path"),
    pytest.param("https://app.example.com/wiki/" + "a" * 100_000, id="100k allowed URL"),
    pytest.param("\u00e9" * 100_000, id="100k non-ascii"),
    pytest.param("/\t" * 50_000, id="100k tabs"),
    pytest.param("\uff0e" * 100_000, id="100k NFKC-expanding chars"),
]


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize("payload", LONG_INPUTS)
def test_oversized_next_is_refused_fast(payload):
    started = time.perf_counter()
    for _ in range(100):
        decision = validate_next(payload, RULES)
    assert decision.reason == "too_long" and decision.target == DEFAULT
    assert (time.perf_counter() - started) / 100 < 0.001


def test_length_limit_is_inclusive_and_configurable():
    assert validate_next("/" + "a" * 2047, RULES).accepted
    assert_rejected("/" + "a" * 2048, "too_long")
    short = RedirectRules(own_origin="https://auth.example.com", default="/", max_length=8)
    assert validate_next("/1234567", short).accepted
    assert_rejected("/12345678", "too_long", short)


def test_build_rules_passes_the_length_limit_through():
    rules = build_rules("https://auth.example.com", max_length=16)
    assert rules.max_length == 16
    assert validate_next("/" + "a" * 15, rules).accepted
    assert_rejected("/" + "a" * 16, "too_long", rules)
    with pytest.raises(ValueError, match="too_long"):
        build_rules("https://auth.example.com", default="/welcome", max_length=4)


def test_target_grown_by_percent_encoding_past_the_limit_is_refused():
    # 1 char -> 6 bytes of %XX: accepting would make validate_next(target) disagree with itself.
    assert_rejected("/" + "\u00e9" * 1000, "too_long")


def test_worst_case_input_within_the_limit_is_fast():
    distinct_cjk = "".join(chr(0x4E00 + i) for i in range(2046))  # one NFKC lookup per char
    payloads = ["/" + "\u00e9" * 2047, "/" + "a/" * 1023, "/x?" + "\uff05" * 2045, "/" + distinct_cjk]
    started = time.perf_counter()
    for payload in payloads * 25:
        validate_next(payload, RULES)
    assert (time.perf_counter() - started) / 100 < 0.02  # ~1-4 ms each on a laptop


# --- Backslashes in the query: data, not a separator --------------------------------------------
# WHATWG reads "\\" as "/" only up to the query; after the first "?" (until "#") it is data and
# cannot change where the browser goes, so refusing it sent users to the default page for nothing.
QUERY_BACKSLASHES = [
    pytest.param("/dashboard?redirect=\\evil.test", "/dashboard?redirect=%5Cevil.test", None,
                 id="review 15g: own path, backslash in a query value"),
    pytest.param("/x?next=\\\\evil.com", "/x?next=%5C%5Cevil.com", None, id="two backslashes in query"),
    pytest.param("/x?\\", "/x?%5C", None, id="query of one backslash"),
    pytest.param("/x?a=1&b=\\/\\/evil.com#top", "/x?a=1&b=%5C/%5C/evil.com#top", None, id="query then fragment"),
    pytest.param("/x?q=%5C\\", "/x?q=%5C%5C", None, id="encoded and raw backslash in query"),
    pytest.param("/x?a?\\b", "/x?a?%5Cb", None, id="backslash after a second question mark"),
    pytest.param("https://auth.example.com/x?r=\\evil.test", "https://auth.example.com/x?r=%5Cevil.test", None,
                 id="own origin absolute, backslash in query"),
    pytest.param("https://auth.example.com?\\evil.test", "https://auth.example.com/?%5Cevil.test", None,
                 id="own origin without path, backslash in query"),
    pytest.param("https://app.example.com/wiki/p?r=\\\\evil.com", "https://app.example.com/wiki/p?r=%5C%5Cevil.com",
                 WIKI, id="allowed app, backslashes in query"),
    pytest.param("https://grafana.example.com:8443?\\", "https://grafana.example.com:8443/?%5C", GRAFANA,
                 id="allowed app origin, backslash query"),
]

BACKSLASHES_THAT_STEER = [
    P("/x\\?a=b", "backslash", "backslash in the path before the query"),
    P("/\\evil.com?x=\\", "backslash", "backslash path, also one in the query"),
    P("\\\\evil.com?\\", "backslash", "backslashes as the authority, query after"),
    P("https:\\\\app.example.com/wiki?\\", "backslash", "backslash slashes after the scheme"),
    P("https://app.example.com\\@evil.com/wiki?\\", "backslash", "backslash in the authority"),
    P("https://app.example.com/wiki\\..\\admin?x", "backslash", "backslash dot-dot in the path"),
    P("/x#\\evil.com", "backslash", "backslash in the fragment (not the query)"),
    P("/x#?\\evil.com", "backslash", "question mark inside the fragment opens no query"),
    P("/x?a#\\", "backslash", "backslash after the query, in the fragment"),
    P("/%5Cevil.com?x=\\", "encoded_separator", "encoded backslash in the path"),
    P("/x%5c?x=\\", "encoded_separator", "encoded lowercase backslash before the query"),
    P("https://app.example.com%5C.evil.com/wiki?\\", "encoded_host", "encoded backslash in the host"),
    P("https://app.example.com%5C@evil.com/wiki?\\", "userinfo", "encoded backslash then userinfo"),
    P("https://evil.test/?\\", "host_not_allowed", "a query backslash opens no other host"),
    P("//evil.com?\\", "scheme_relative", "scheme-relative with a query backslash"),
    P("?\\evil.com", "malformed", "a bare query is no path"),
]


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize(("payload", "target", "app"), QUERY_BACKSLASHES)
def test_a_backslash_in_the_query_is_accepted_and_reencoded(payload, target, app):
    decision = validate_next(payload, RULES)
    assert decision == RedirectDecision(target=target, accepted=True, reason="ok", app=app)
    assert "\\" not in decision.target
    assert validate_next(decision.target, RULES) == decision


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize(("payload", "reason"), BACKSLASHES_THAT_STEER)
def test_backslashes_where_they_steer_the_browser_are_still_refused(payload, reason):
    assert_rejected(payload, reason)


# --- What is accepted, and exactly what is sent back ------------------------------------------

GOOD = [
    pytest.param("/", "/", None, id="root"),
    pytest.param("/account", "/account", None, id="own path"),
    pytest.param("/account/", "/account/", None, id="own path trailing slash"),
    pytest.param("/wiki-evil", "/wiki-evil", None, id="own path that is not an app prefix"),
    pytest.param("/evil.com", "/evil.com", None, id="own path that looks like a host"),
    pytest.param("/@evil.com", "/@evil.com", None, id="own path starting with at"),
    pytest.param("/view?next=http://x", "/view?next=http://x", None, id="query with URL"),
    pytest.param("/view/?param=http://example.com", "/view/?param=http://example.com", None, id="django query"),
    pytest.param("/view?next=//evil.com", "/view?next=//evil.com", None, id="query with scheme-relative"),
    pytest.param("/view?next=%2F%2Fevil.com", "/view?next=%2F%2Fevil.com", None, id="query keeps encoded slashes"),
    pytest.param("/login?next=%2Fwiki%3Fa%3D1", "/login?next=%2Fwiki%3Fa%3D1", None, id="nested next"),
    pytest.param("/search?q=100%", "/search?q=100%25", None, id="lone percent in query encoded"),
    pytest.param("/search?q=a?b", "/search?q=a?b", None, id="question mark in query"),
    pytest.param("/x?", "/x?", None, id="empty query kept"),
    pytest.param("/x#", "/x#", None, id="empty fragment kept"),
    pytest.param("/x#top", "/x#top", None, id="fragment"),
    pytest.param("/x#a#b", "/x#a%23b", None, id="hash in fragment encoded"),
    pytest.param("/?x=1", "/?x=1", None, id="root with query"),
    pytest.param("/url%20with%20spaces/", "/url%20with%20spaces/", None, id="django encoded spaces"),
    pytest.param("/caf\u00e9", "/caf%C3%A9", None, id="non-ascii path encoded"),
    pytest.param("/caf%c3%a9", "/caf%c3%a9", None, id="encoded UTF-8 kept as sent"),
    pytest.param("/\u3002", "/%E3%80%82", None, id="ideographic stop in path is only text"),
    pytest.param("/a'b", "/a%27b", None, id="single quote encoded"),
    pytest.param('/a"b', "/a%22b", None, id="double quote encoded"),
    pytest.param("/<script>", "/%3Cscript%3E", None, id="angle brackets encoded"),
    pytest.param("/a|b^c[d]{e}`f", "/a%7Cb%5Ec%5Bd%5D%7Be%7D%60f", None, id="unsafe ascii encoded"),
    pytest.param("/x?q=<script>'\"", "/x?q=%3Cscript%3E%27%22", None, id="query markup encoded"),
    pytest.param("/x?email=me@example.com", "/x?email=me@example.com", None, id="at sign in query"),
    pytest.param("/a;b=c,d", "/a;b=c,d", None, id="sub-delims kept"),
    pytest.param("/%7Euser", "/%7Euser", None, id="existing escape kept"),
    pytest.param("/..x/.x/x..", "/..x/.x/x..", None, id="dots that are not dot segments"),
    pytest.param("https://APP.example.com/wiki/page", "https://app.example.com/wiki/page", WIKI, id="host lowercased"),
    pytest.param("HTTPS://app.example.com/wiki", "https://app.example.com/wiki", WIKI, id="scheme lowercased"),
    pytest.param("hTtPs://App.Example.Com/wiki/", "https://app.example.com/wiki/", WIKI, id="mixed case"),
    pytest.param("https://app.example.com:443/wiki", "https://app.example.com/wiki", WIKI, id="default port dropped"),
    pytest.param("https://app.example.com:0443/wiki", "https://app.example.com/wiki", WIKI, id="zero-padded default port"),
    pytest.param("https://app.example.com/wiki?x", "https://app.example.com/wiki?x", WIKI, id="prefix then query"),
    pytest.param("https://app.example.com/wiki#top", "https://app.example.com/wiki#top", WIKI, id="prefix then fragment"),
    pytest.param("https://app.example.com/wiki/a?next=https://evil.com", "https://app.example.com/wiki/a?next=https://evil.com", WIKI, id="app query with URL"),
    pytest.param("https://app.example.com/wiki/p?email=me@example.com", "https://app.example.com/wiki/p?email=me@example.com", WIKI, id="at sign in app query"),
    pytest.param("https://app.example.com/wiki/a b".replace(" ", "%20"), "https://app.example.com/wiki/a%20b", WIKI, id="encoded space in app path"),
    pytest.param("https://grafana.example.com:8443/d/abc", "https://grafana.example.com:8443/d/abc", GRAFANA, id="app on own port"),
    pytest.param("https://grafana.example.com:8443", "https://grafana.example.com:8443/", GRAFANA, id="app origin gets root path"),
    pytest.param("https://grafana.example.com:8443?orgId=1", "https://grafana.example.com:8443/?orgId=1", GRAFANA, id="app origin with query"),
    pytest.param("https://auth.example.com/account", "https://auth.example.com/account", None, id="own origin absolute"),
    pytest.param("https://auth.example.com:443", "https://auth.example.com/", None, id="own origin default port"),
    pytest.param("https://auth.example.com?x", "https://auth.example.com/?x", None, id="own origin with query"),
]


@pytest.mark.asvs("V3.7.2", "V1.2.2")
@pytest.mark.parametrize(("payload", "target", "app"), GOOD)
def test_allowed_targets_are_accepted_and_reserialized(payload, target, app):
    decision = validate_next(payload, RULES)
    assert decision == RedirectDecision(target=target, accepted=True, reason="ok", app=app)
    # The rebuilt target is itself a valid input that maps to itself.
    assert validate_next(decision.target, RULES) == decision


@pytest.mark.asvs("V1.2.2")
@pytest.mark.parametrize(("payload", "target", "app"), GOOD)
def test_accepted_targets_are_printable_ascii_without_markup(payload, target, app):
    sent = validate_next(payload, RULES).target
    assert sent.isascii() and sent.isprintable()
    assert not set(sent) & set(" \"'<>\\`")


@pytest.mark.asvs("V3.7.2")
def test_own_origin_may_be_http_in_development():
    assert validate_next("http://127.0.0.1:8000/account", DEV_RULES) == RedirectDecision(
        "http://127.0.0.1:8000/account", True, "ok"
    )
    assert validate_next("HTTP://127.0.0.1:8000", DEV_RULES).target == "http://127.0.0.1:8000/"
    assert validate_next("/account", DEV_RULES).target == "/account"
    assert validate_next("https://app.example.com/wiki", DEV_RULES).app == WIKI


@pytest.mark.asvs("V3.7.3")
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        P("http://127.0.0.1:8001/", "scheme", "http to a neighbouring port"),
        P("http://127.0.0.1/", "scheme", "http to default port"),
        P("http://localhost:8000/", "scheme", "http to localhost alias"),
        P("http://app.example.com/wiki", "scheme", "http to an app is still a downgrade"),
        P("https://127.0.0.1:8000/", "host_not_allowed", "https to the http dev origin"),
    ],
)
def test_development_http_origin_does_not_open_other_http_targets(payload, reason):
    assert_rejected(payload, reason, DEV_RULES)


@pytest.mark.asvs("V3.7.2")
def test_longest_matching_prefix_names_the_app():
    admin = AllowedApp("https://app.example.com", "/wiki/admin/", "Wiki admin")
    rules = build_rules("https://auth.example.com", [WIKI, admin, GRAFANA])
    assert validate_next("https://app.example.com/wiki/admin/users", rules).app.name == "Wiki admin"
    assert validate_next("https://app.example.com/wiki/admin", rules).app.name == "Wiki admin"
    assert validate_next("https://app.example.com/wiki/administrator", rules).app == WIKI
    assert validate_next("https://app.example.com/wiki/page", rules).app == WIKI


@pytest.mark.asvs("V3.7.2")
def test_ipv6_app_matches_only_its_canonical_literal():
    rules = build_rules("https://auth.example.com", [AllowedApp("https://[2001:DB8:0:0::1]:8443", "/v6")])
    assert validate_next("https://[2001:db8::1]:8443/v6/x", rules).accepted
    assert validate_next("https://[2001:DB8::1]:8443/v6", rules).target == "https://[2001:db8::1]:8443/v6"
    assert_rejected("https://[2001:db8:0::1]:8443/v6", "host_not_allowed", rules)
    assert_rejected("https://[2001:db8::1]/v6", "port_not_allowed", rules)
    assert_rejected("https://[2001:db8::1]:8443/v66", "path_not_allowed", rules)


def test_rejections_carry_no_app_and_never_echo_input():
    for family in HOSTILE_FAMILIES.values():
        for param in family:
            decision = validate_next(param.values[0], RULES)
            assert decision.app is None and decision.target == DEFAULT


def test_decision_is_a_pure_function_of_its_arguments():
    before = RULES
    first = [validate_next(p.values[0], RULES) for p in GOOD + PATHS]
    second = [validate_next(p.values[0], RULES) for p in GOOD + PATHS]
    assert first == second and RULES == before


def test_reason_codes_are_the_documented_set():
    import authsvc.rules.redirects as module

    documented = {
        "ok", "empty", "too_long", "control_char", "whitespace", "backslash", "lookalike",
        "malformed", "scheme", "scheme_relative", "no_authority", "userinfo", "non_ascii_host",
        "encoded_host", "host_not_allowed", "port_not_allowed", "path_not_allowed",
        "empty_segment", "encoded_separator", "dot_segment",
    }  # fmt: skip
    seen = {
        validate_next(p.values[0], RULES).reason
        for family in [*HOSTILE_FAMILIES.values(), MISSING]
        for p in family
    } | {"ok", "too_long"}
    assert seen == documented
    for reason in documented:
        assert f"``{reason}``" in module.__doc__


def test_module_depends_only_on_the_standard_library():
    import authsvc.rules.redirects as module

    tree = ast.parse(pathlib.Path(module.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


# --- Configuration: parse_origin and build_rules ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        pytest.param("HTTPS://App.Example.com:443/", "https://app.example.com", id="case, port, slash"),
        pytest.param("https://app.example.com", "https://app.example.com", id="already canonical"),
        pytest.param("https://app.example.com:8443", "https://app.example.com:8443", id="other port"),
        pytest.param("https://app.example.com:08443", "https://app.example.com:8443", id="zero-padded port"),
        pytest.param("http://127.0.0.1:8000", "http://127.0.0.1:8000", id="dev origin"),
        pytest.param("http://localhost:80", "http://localhost", id="http default port"),
        pytest.param("https://[2001:DB8:0:0::1]:443", "https://[2001:db8::1]", id="IPv6 compressed"),
        pytest.param("https://[::ffff:192.0.2.1]", "https://[::ffff:c000:201]", id="IPv4-mapped IPv6 as hex"),
        pytest.param("https://xn--bcher-kva.example", "https://xn--bcher-kva.example", id="punycode"),
        pytest.param("https://192.0.2.10", "https://192.0.2.10", id="dotted IPv4"),
    ],
)
def test_parse_origin_canonicalizes(text, origin):
    assert parse_origin(text) == origin
    assert parse_origin(origin) == origin


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param(None, "empty", id="None"),
        pytest.param("app.example.com", "must start with https://", id="no scheme"),
        pytest.param("ftp://app.example.com", "must start with https://", id="ftp"),
        pytest.param("javascript://app.example.com", "must start with https://", id="javascript"),
        pytest.param("https:app.example.com", "must start with https://", id="no slashes"),
        pytest.param("https://", "empty host", id="no host"),
        pytest.param("https://:443", "empty host", id="port only"),
        pytest.param("https:///app.example.com", "path", id="three slashes"),
        pytest.param("https://app.example.com/wiki", "path", id="path"),
        pytest.param("https://app.example.com//", "path", id="double trailing slash"),
        pytest.param("https://app.example.com?x=1", "query", id="query"),
        pytest.param("https://app.example.com#x", "fragment", id="fragment"),
        pytest.param("https://app.example.com\\", "path", id="backslash"),
        pytest.param("https://user@app.example.com", "userinfo", id="userinfo"),
        pytest.param("https://*.example.com", "wildcard", id="wildcard"),
        pytest.param("https://app%2eexample.com", "percent", id="percent-encoded"),
        pytest.param("https://app.example.com.", "trailing dot", id="trailing dot"),
        pytest.param(" https://app.example.com", "whitespace", id="leading space"),
        pytest.param("https://app.example.com\n", "whitespace", id="trailing LF"),
        pytest.param("https://b\u00fccher.example", "punycode", id="IDN"),
        pytest.param("https://app\uff0eexample.com", "non-ASCII", id="full-width dot"),
        pytest.param("https://app.example.com:0", "port", id="port 0"),
        pytest.param("https://app.example.com:65536", "port", id="port too big"),
        pytest.param("https://app.example.com:", "port", id="empty port"),
        pytest.param("https://app.example.com:https", "port", id="named port"),
        pytest.param("https://0x7f.1", "IPv4", id="hex IPv4"),
        pytest.param("https://3627734734", "IPv4", id="decimal IPv4"),
        pytest.param("https://127.0.0.01", "IPv4", id="zero-padded IPv4"),
        pytest.param("https://app.0x", "IPv4", id="ends in hex number"),
        pytest.param("https://[::1", "IPv6", id="unclosed IPv6"),
        pytest.param("https://[zz::1]", "IPv6", id="bad IPv6"),
        pytest.param("https://[::1]x", "IPv6", id="junk after IPv6"),
        pytest.param("https://app_x.example.com", "invalid host", id="underscore"),
        pytest.param("https://-app.example.com", "invalid host", id="leading hyphen label"),
        pytest.param("https://app..example.com", "invalid host", id="empty label"),
        pytest.param("https://" + "a" * 64 + ".example.com", "invalid host", id="label too long"),
    ],
)
def test_parse_origin_rejects_anything_but_a_bare_origin(text, message):
    with pytest.raises(ValueError, match=message):
        parse_origin(text)


def test_build_rules_canonicalizes_once():
    rules = build_rules(
        "HTTPS://Auth.Example.com:443/",
        [AllowedApp("https://APP.example.com:443", "/wiki/", "Wiki"), AllowedApp("https://x.example.com")],
        default="/home",
    )
    assert rules == RedirectRules(
        own_origin="https://auth.example.com",
        apps=(AllowedApp("https://app.example.com", "/wiki", "Wiki"), AllowedApp("https://x.example.com", "/")),
        default="/home",
        max_length=2048,
    )


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("wiki", id="no leading slash"),
        pytest.param("", id="empty"),
        pytest.param("//wiki", id="double leading slash"),
        pytest.param("/wiki//x", id="empty segment"),
        pytest.param("/wiki//", id="double trailing slash"),
        pytest.param("/wiki/../admin", id="dot-dot"),
        pytest.param("/./wiki", id="dot"),
        pytest.param("/wiki%2f", id="percent-encoded"),
        pytest.param("/wiki?x", id="query"),
        pytest.param("/wiki#x", id="fragment"),
        pytest.param("/wi ki", id="space"),
        pytest.param("/wiki\\", id="backslash"),
        pytest.param("/wiki*", id="wildcard"),
        pytest.param("/w\u00efki", id="non-ascii"),
    ],
)
def test_build_rules_rejects_bad_path_prefixes(prefix):
    with pytest.raises(ValueError, match="path_prefix"):
        build_rules("https://auth.example.com", [AllowedApp("https://app.example.com", prefix)])


@pytest.mark.parametrize(
    "default",
    [
        pytest.param("//evil.com", id="scheme-relative"),
        pytest.param("https://evil.com", id="off-list host"),
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("/a b", id="whitespace"),
        pytest.param("/caf\u00e9", id="needs encoding"),
        pytest.param("", id="empty"),
        pytest.param("home", id="relative"),
    ],
)
def test_build_rules_rejects_an_unsafe_default(default):
    with pytest.raises(ValueError, match="default redirect"):
        build_rules("https://auth.example.com", default=default)


def test_build_rules_accepts_an_app_url_as_default():
    rules = build_rules("https://auth.example.com", [WIKI], default="https://app.example.com/wiki")
    assert_rejected("https://evil.com", "host_not_allowed", rules)


def test_build_rules_rejects_bad_origins_and_non_apps():
    with pytest.raises(ValueError, match="must start with https://"):
        build_rules("auth.example.com")
    with pytest.raises(ValueError, match="wildcard"):
        build_rules("https://auth.example.com", [AllowedApp("https://*.example.com")])
    with pytest.raises(TypeError, match="AllowedApp"):
        build_rules("https://auth.example.com", ["https://app.example.com"])
