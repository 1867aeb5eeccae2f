"""The extension's settings, read once from ``app.config`` at ``init_app``.

A misconfiguration raises :class:`ConfigError` naming the setting and the fix, so an app that
would trust the wrong peer, or send users to the wrong place, does not start.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from flask_authsvc.peers import Network, NetworkProblem, parse_networks

PROXY: Final = "proxy"
OIDC: Final = "oidc"
MODES: Final = (PROXY, OIDC)

KNOWN: Final = frozenset({
    "AUTHSVC_URL", "AUTHSVC_MODE", "AUTHSVC_TRUSTED_PROXIES",
    "AUTHSVC_CLIENT_ID", "AUTHSVC_CLIENT_SECRET", "AUTHSVC_SCOPES",
})
DEFAULT_SCOPES: Final = ("openid", "profile")
_LOOPBACK_NAMES: Final = frozenset({"localhost"})


class ConfigError(ValueError):
    """A setting that cannot work; ``setting`` is its name in ``app.config``."""

    def __init__(self, setting: str, problem: str):
        self.setting = setting
        super().__init__(f"{setting} {problem}")


@dataclass(frozen=True)
class Settings:
    url: str                                  # authsvc's public URL, no trailing slash
    mode: str
    trusted_proxies: tuple[Network, ...] = ()
    client_id: str | None = None
    client_secret: str | None = None
    scopes: tuple[str, ...] = DEFAULT_SCOPES


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_url(value: object) -> str:
    """``AUTHSVC_URL`` checked: an absolute https URL with a host and nothing after the path (http
    only for a loopback host, for development). Returned without a trailing slash."""
    name = "AUTHSVC_URL"
    if value is None or value == "":
        raise ConfigError(name, "is not set: authsvc's public URL, e.g. https://auth.example.com")
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, not {type(value).__name__}")
    if not value.isascii() or any(ch <= " " or ch == "\x7f" for ch in value):
        raise ConfigError(name, f"{value!r} has spaces, control or non-ASCII characters (use the punycode host)")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise ConfigError(name, f"{value!r} is not a URL ({error})") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError(name, f"{value!r} must be an absolute URL such as https://auth.example.com")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(name, f"{value!r} must use https (http only for a loopback host in development)")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ConfigError(name, f"{value!r} must not contain a user name or password")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ConfigError(name, f"{value!r} must not have a query or fragment")
    return value.rstrip("/")


def read_settings(config: Mapping[str, object]) -> Settings:
    """The settings from ``config`` (``app.config``), or :class:`ConfigError` for the first problem."""
    for key in config:
        if isinstance(key, str) and key.startswith("AUTHSVC_") and key not in KNOWN:
            close = difflib.get_close_matches(key, sorted(KNOWN), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(key, f"is not a Flask-Authsvc setting{hint}")
    url = read_url(config.get("AUTHSVC_URL"))
    mode = config.get("AUTHSVC_MODE", PROXY)
    if mode not in MODES:
        raise ConfigError("AUTHSVC_MODE", f"is {mode!r}: use 'proxy' (behind a forward-auth proxy) or 'oidc'")
    if mode == PROXY:
        return Settings(url, mode, trusted_proxies=read_trusted_proxies(config.get("AUTHSVC_TRUSTED_PROXIES")))
    return read_oidc(url, config)


def read_trusted_proxies(value: object) -> tuple[Network, ...]:
    name = "AUTHSVC_TRUSTED_PROXIES"
    if value is None:
        raise ConfigError(name, "is not set: the proxy mode believes identity headers only from these "
                                "addresses or networks (e.g. '127.0.0.1' when nginx runs on this host)")
    if not isinstance(value, (str, list, tuple, set, frozenset)):
        raise ConfigError(name, f"must be a comma-separated string or a list, not {type(value).__name__}")
    try:
        return parse_networks(value)
    except NetworkProblem as problem:
        raise ConfigError(name, str(problem)) from None


def read_oidc(url: str, config: Mapping[str, object]) -> Settings:
    client_id = config.get("AUTHSVC_CLIENT_ID")
    if not isinstance(client_id, str) or not client_id.strip():
        raise ConfigError("AUTHSVC_CLIENT_ID", "is not set: the client id authsvc registered for this app "
                                               "(the OIDC mode needs it)")
    secret = config.get("AUTHSVC_CLIENT_SECRET")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise ConfigError("AUTHSVC_CLIENT_SECRET", "must be a non-empty string, or unset for a public client")
    scopes_value = config.get("AUTHSVC_SCOPES", DEFAULT_SCOPES)
    if isinstance(scopes_value, str):
        scopes = tuple(scopes_value.split())
    elif isinstance(scopes_value, (list, tuple)) and all(isinstance(s, str) for s in scopes_value):
        scopes = tuple(scopes_value)
    else:
        raise ConfigError("AUTHSVC_SCOPES", "must be a space-separated string or a list of strings")
    if "openid" not in scopes:
        raise ConfigError("AUTHSVC_SCOPES", f"is {' '.join(scopes)!r}: it must include 'openid'")
    if config.get("AUTHSVC_TRUSTED_PROXIES") is not None:
        raise ConfigError("AUTHSVC_TRUSTED_PROXIES", "is a proxy-mode setting; the OIDC mode reads no identity "
                                                     "headers: remove it, or set AUTHSVC_MODE = 'proxy'")
    return Settings(url, OIDC, client_id=client_id.strip(), client_secret=secret, scopes=scopes)


# The OIDC mode's sign-in (user, groups, mfa) is a cookie signed with SECRET_KEY alone: a short key
# is guessed offline from any one cookie (word lists of tutorial keys, "dev", brute force), and a
# cookie forged with it signs anyone in as anyone. 32 bytes is what secrets.token_hex(32) gives.
MIN_SECRET_KEY_BYTES: Final = 32


def read_secret_keys(config: Mapping[str, object]) -> None:
    """Raise :class:`ConfigError` naming ``SECRET_KEY`` unless it is at least 32 bytes (a ``str``
    counted in UTF-8), or naming ``SECRET_KEY_FALLBACKS`` unless each of those is too (Flask 3.1
    accepts a cookie signed with any of them)."""
    fix = "secrets.token_hex(32), kept out of the code (e.g. in the environment)"
    key = config.get("SECRET_KEY")
    if not key:
        raise ConfigError("SECRET_KEY", f"is not set: the OIDC mode keeps the sign-in in Flask's signed session; "
                                        f"set it to {fix}")
    fallbacks = config.get("SECRET_KEY_FALLBACKS") or []
    for name, value in [("SECRET_KEY", key)] + [("SECRET_KEY_FALLBACKS", v) for v in fallbacks]:
        if not isinstance(value, (str, bytes)):
            raise ConfigError(name, f"must hold a string or bytes, not {type(value).__name__}; use {fix}")
        size = len(value.encode() if isinstance(value, str) else value)
        if size < MIN_SECRET_KEY_BYTES:
            raise ConfigError(name, f"holds a key of {size} bytes, under {MIN_SECRET_KEY_BYTES}: the OIDC mode's "
                                    f"sign-in cookie is signed with it alone, and a short key is guessed offline "
                                    f"from any one cookie; use {fix}")
