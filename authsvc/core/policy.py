"""The security policy: every number authsvc enforces, loaded once from TOML into frozen objects.

The bundled ``policies/default.toml`` holds the defaults; a file named by ``AUTHSVC_POLICY`` is
laid over it key by key, so a deployment states only what it changes. Structural mistakes (an
unknown key, a wrong type, a negative time) raise :class:`PolicyError` at load; whether the values
are *sound* for production is judged separately by :mod:`authsvc.core.config` (``authsvc check``).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from authsvc.rules import access as access_rules
from authsvc.rules.access import AccessRules, Rule
from authsvc.rules.groups import group_problem, normalize_group
from authsvc.rules.usernames import normalize_username, username_problem


class PolicyError(ValueError):
    """The policy file cannot be used as written; the message names the key and the problem."""


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int
    max_length: int
    context_words: tuple[str, ...]


@dataclass(frozen=True)
class Argon2Policy:
    time_cost: int
    memory_cost_kib: int
    parallelism: int
    hash_len: int
    salt_len: int
    max_concurrent: int
    queue_timeout_seconds: float
    anonymous_max_concurrent: int
    anonymous_queue: int
    anonymous_nice: int
    known_queue: int
    request_nice: int


@dataclass(frozen=True)
class SessionPolicy:
    idle_timeout_seconds: int
    absolute_lifetime_seconds: int
    touch_interval_seconds: int
    remember_lifetime_days: int
    remember_rotation_grace_seconds: int
    max_sessions_per_user: int
    verify_cache_seconds: float
    purge_after_seconds: int


@dataclass(frozen=True)
class AppEntry:
    origin: str
    path_prefix: str = "/"
    name: str | None = None


@dataclass(frozen=True)
class RedirectPolicy:
    allowed_origins: tuple[str, ...]
    default: str
    max_length: int
    apps: tuple[AppEntry, ...]


@dataclass(frozen=True)
class ThrottlePolicy:
    per_client: tuple[str, ...]
    per_client_known_device: tuple[str, ...]
    per_device: tuple[str, ...]
    successes_per_account: tuple[str, ...]
    max_devices_per_account: int
    failures_before_backoff: int
    failure_window_seconds: int
    backoff_initial_seconds: int
    backoff_max_seconds: int
    max_consecutive_failures: int
    consecutive_failure_memory_seconds: int
    device_cookie_lifetime_days: int
    global_logins: str
    storage_failure: str


@dataclass(frozen=True)
class HeaderPolicy:
    hsts_max_age_seconds: int
    hsts_preload: bool


@dataclass(frozen=True)
class LimitPolicy:
    max_content_length: int
    username_max_length: int


@dataclass(frozen=True)
class MfaPolicy:
    required: bool
    step_up_seconds: int
    pending_seconds: int
    rp_id: str


@dataclass(frozen=True)
class OidcPolicy:
    signing_alg: str
    access_token_lifetime_seconds: int
    id_token_lifetime_seconds: int
    refresh_token_lifetime_seconds: int
    code_lifetime_seconds: int
    token_requests_per_client: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    passwords: PasswordPolicy
    argon2: Argon2Policy
    sessions: SessionPolicy
    redirects: RedirectPolicy
    throttle: ThrottlePolicy
    headers: HeaderPolicy
    limits: LimitPolicy
    mfa: MfaPolicy
    oidc: OidcPolicy
    access: AccessRules = access_rules.NO_RULES
    source: str = "default"


_SECTIONS = {
    "passwords": PasswordPolicy,
    "argon2": Argon2Policy,
    "sessions": SessionPolicy,
    "redirects": RedirectPolicy,
    "throttle": ThrottlePolicy,
    "headers": HeaderPolicy,
    "limits": LimitPolicy,
    "mfa": MfaPolicy,
    "oidc": OidcPolicy,
}


def default_policy_path() -> Path:
    """The bundled default policy (``policies/default.toml`` in a checkout, or the packaged copy)."""
    checkout = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
    if checkout.is_file():
        return checkout
    return Path(str(resources.files("authsvc") / "data" / "default.toml"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} does not exist (AUTHSVC_POLICY)") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path} is not valid TOML: {exc}") from None


# Keys a release renamed: the old name gets a message saying what to write instead.
_RENAMED = {
    "throttle.global_failed_logins": "throttle.global_logins (it now counts every login that runs argon2, "
                                     "successes and known devices included)",
}


def _merge(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if f"{where}{key}" in _RENAMED:
            raise PolicyError(f"policy key {where}{key} was renamed: use {_RENAMED[f'{where}{key}']}")
        if key not in base:
            raise PolicyError(f"unknown policy key {where}{key}")
        if isinstance(base[key], dict) and not isinstance(value, dict):
            raise PolicyError(f"policy key {where}{key} must be a table ([{where}{key}]), not {value!r}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            merged[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            merged[key] = value
    return merged


def _coerce(section: str, cls: type, raw: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in raw:
            if f.default is not MISSING:
                continue
            raise PolicyError(f"policy key {section}.{f.name} is missing")
        value = raw[f.name]
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        values[f.name] = _check_type(f"{section}.{f.name}", kind, value)
    return cls(**values)


def _check_type(key: str, kind: str, value: Any) -> Any:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PolicyError(f"policy key {key} must be a whole number >= 0, not {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PolicyError(f"policy key {key} must be a number >= 0, not {value!r}")
        if not math.isfinite(value):  # TOML has inf and nan: a wait that overflows or never ends
            raise PolicyError(f"policy key {key} must be a finite number, not {value!r}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise PolicyError(f"policy key {key} must be true or false, not {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise PolicyError(f"policy key {key} must be a string, not {value!r}")
        return value
    if kind.startswith("tuple[str"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"policy key {key} must be a list of strings")
        return tuple(value)
    if kind.startswith("tuple[AppEntry"):
        if not isinstance(value, list):
            raise PolicyError(f"policy key {key} must be a list of tables ([[redirects.apps]])")
        apps = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise PolicyError(f"policy {key}[{i}] must be a table ([[redirects.apps]]), not {entry!r}")
            unknown = set(entry) - {"origin", "path_prefix", "name"}
            if unknown or "origin" not in entry:
                raise PolicyError(f"policy {key}[{i}] needs 'origin' and may have 'path_prefix', 'name'")
            apps.append(AppEntry(str(entry["origin"]), str(entry.get("path_prefix", "/")),
                                 entry.get("name")))
        return tuple(apps)
    if kind == "str | None":
        return value
    raise PolicyError(f"policy key {key}: unsupported type {kind}")  # pragma: no cover


def load_policy(path: str | Path | None = None) -> Policy:
    """Load the default policy, overlaid with ``path`` when given."""
    raw = _read_toml(default_policy_path())
    raw.setdefault("redirects", {}).setdefault("apps", [])
    raw.setdefault("access", {}).setdefault("rules", [])
    source = "default"
    if path:
        raw = _merge(raw, _read_toml(Path(path)), "")
        source = str(path)
    sections = {name: _coerce(name, cls, raw.get(name, {})) for name, cls in _SECTIONS.items()}
    if sections["throttle"].storage_failure not in ("closed", "memory"):
        raise PolicyError('policy key throttle.storage_failure must be "closed" or "memory"')
    _check_rates(sections["throttle"])
    if sections["oidc"].signing_alg not in ("ES256", "RS256"):  # never "none", never an HMAC alg
        raise PolicyError('policy key oidc.signing_alg must be "ES256" or "RS256"')
    _check_rate_list("oidc.token_requests_per_client", sections["oidc"].token_requests_per_client)
    access = parse_access(raw.get("access", {}), sections["limits"].username_max_length)
    return Policy(**sections, access=access, source=source)


_RULE_KEYS = ("hosts", "paths", "methods", "groups", "users", "policy")


def parse_access(raw: Any, username_max_length: int = 64) -> AccessRules:
    """``[access]`` into :class:`authsvc.rules.access.AccessRules`, once at start-up. A rule that
    cannot mean one thing refuses the start: the message names the key and says what to write."""
    if not isinstance(raw, dict):
        raise PolicyError("policy key access must be a table ([access])")
    unknown = sorted(set(raw) - {"default", "rules"})
    if unknown:
        raise PolicyError(f"unknown policy key access.{unknown[0]} (access has default and rules)")
    default = raw.get("default", access_rules.ONE_FACTOR)
    if default not in access_rules.DEFAULT_POLICIES:
        raise PolicyError(f"policy key access.default must be one of {', '.join(access_rules.DEFAULT_POLICIES)}, "
                          f"not {default!r} (a bypass default would open every app: bypass parts with rules)")
    entries = raw.get("rules", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise PolicyError("policy key access.rules must be a list of tables ([[access.rules]])")
    return AccessRules(default, tuple(_rule(f"access.rules[{i}]", e, username_max_length)
                                      for i, e in enumerate(entries)))


def _rule(where: str, entry: dict[str, Any], username_max_length: int) -> Rule:
    unknown = sorted(set(entry) - set(_RULE_KEYS))
    if unknown:
        raise PolicyError(f"unknown policy key {where}.{unknown[0]} (a rule has {', '.join(_RULE_KEYS)})")
    policy = entry.get("policy")
    if policy not in access_rules.POLICIES:
        raise PolicyError(f"policy key {where}.policy must be one of {', '.join(access_rules.POLICIES)}, "
                          f"not {policy!r}")
    if "hosts" not in entry:
        raise PolicyError(f'policy key {where}.hosts is missing: name the hosts, e.g. hosts = ["app.example.com"]')
    lists = {}
    for key in ("hosts", "paths", "methods", "groups", "users"):
        if key not in entry:
            lists[key] = ()
            continue
        values = entry[key]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise PolicyError(f"policy key {where}.{key} must be a non-empty list of strings "
                              f"(leave the key out to match any)")
        lists[key] = tuple(values)
    for key, judge in (("hosts", access_rules.rule_host_problem), ("paths", access_rules.rule_path_problem),
                       ("methods", access_rules.method_problem)):
        for value in lists[key]:
            problem = judge(value)
            if problem:
                raise PolicyError(f"policy key {where}.{key}: {value!r} {problem}")
    for value in lists["groups"]:
        problem = group_problem(value)
        if problem or normalize_group(value) != value:
            raise PolicyError(f"policy key {where}.groups: {value!r}: "
                              + (problem or f'write "{normalize_group(value)}" (the group\'s one name)'))
    for value in lists["users"]:
        problem = username_problem(value, username_max_length)
        if problem or normalize_username(value) != value:
            raise PolicyError(f"policy key {where}.users: {value!r}: "
                              + (problem or f'write "{normalize_username(value)}" (the account\'s one name)'))
    if policy == access_rules.BYPASS and (lists["groups"] or lists["users"]):
        raise PolicyError(f"policy key {where}: a bypass rule cannot name groups or users (bypass lets anyone "
                          "through without asking who): use one_factor for named people")
    return Rule(lists["hosts"], policy, lists["paths"], frozenset(lists["methods"]),
                frozenset(lists["groups"]), frozenset(lists["users"]))


def _check_rate_list(key: str, values: tuple[str, ...]) -> None:
    from limits import parse_many

    for value in values:
        try:
            parse_many(value)
        except ValueError:
            raise PolicyError(f'policy key {key}: {value!r} is not a rate limit like "10 per minute"') from None


def _check_rates(throttle: ThrottlePolicy) -> None:
    """Every rate-limit string parses (else the first login would fail, not the start)."""
    from limits import parse_many

    rates = {"global_logins": (throttle.global_logins,), "per_client": throttle.per_client,
             "per_client_known_device": throttle.per_client_known_device, "per_device": throttle.per_device,
             "successes_per_account": throttle.successes_per_account}
    for key, values in rates.items():
        for value in values:
            try:
                parse_many(value)
            except ValueError:
                raise PolicyError(f'policy key throttle.{key}: {value!r} is not a rate limit like '
                                  '"10 per minute"') from None
