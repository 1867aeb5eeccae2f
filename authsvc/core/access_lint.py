"""``authsvc check`` on the access rules: what the policy says that it probably does not mean.

Each finding is a :class:`authsvc.core.config.Problem` (``warning``: check fails; ``error`` for
rules that cannot work at all). The judgements are the pure ones of :mod:`authsvc.rules.access`;
this module only gathers what they need (the allow-listed apps' hosts, who is in which group).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from authsvc.core.config import Problem, Settings
from authsvc.rules.access import AccessRules, host_matches, shadowed_by, wide_bypass

SETTING = "policy access.rules"


def app_hosts(settings: Settings) -> set[str]:
    """The hosts of the apps ``next`` may point to (AUTHSVC_REDIRECT_ALLOWED_ORIGINS, [[redirects.apps]])."""
    origins = settings.redirect_allowed_origins + tuple(a.origin for a in settings.policy.redirects.apps)
    return {(urlsplit(o).hostname or "").rstrip(".") for o in origins} - {""}


def access_problems(access: AccessRules, settings: Settings, members: Mapping[str, int] | None) -> list[Problem]:
    """``members``: each group's member count (None when the database cannot be read)."""
    problems: list[Problem] = []
    if not access.rules:
        return problems
    if settings.trusted_proxies < 1:
        problems.append(Problem("error", "AUTHSVC_TRUSTED_PROXIES", "policy access.rules need the request the proxy "
                                "describes, which is read only from a trusted proxy: every request is denied. Fix: "
                                "set AUTHSVC_TRUSTED_PROXIES=1 (and AUTHSVC_TRUSTED_PROXY_NETWORKS) behind a proxy"))
    hosts = app_hosts(settings)
    for i, rule in enumerate(access.rules):
        where = f"policy access.rules[{i}]"
        earlier = shadowed_by(access, i)
        if earlier is not None:
            problems.append(Problem("warning", SETTING, f"{where} never decides: access.rules[{earlier}] matches "
                                    "every request it matches first. Fix: move it above, or remove it"))
        wide = wide_bypass(rule)
        if wide:
            problems.append(Problem("warning", SETTING, f"{where} {wide}: anyone reaches it without signing in. "
                                    "Fix: give a bypass rule one host and the public paths only"))
        for group in sorted(rule.groups):
            if members is not None and not members.get(group):
                state = "has no members" if group in members else "does not exist"
                problems.append(Problem("warning", SETTING, f"{where} names group {group!r}, which {state}. Fix: "
                                        f"`authsvc group add {group}` and `authsvc user groups USER --add {group}`"))
        for host in rule.hosts:
            if hosts and not any(host_matches(host, h) or host == h for h in hosts):
                problems.append(Problem("warning", SETTING, f"{where} names host {host!r}, which no allow-listed "
                                        "app has. Fix: check the spelling, or add the app to "
                                        "AUTHSVC_REDIRECT_ALLOWED_ORIGINS or [[redirects.apps]]"))
    return problems
