"""Misconfigurations fail at init_app, naming the setting; both modes' settings are checked."""

from __future__ import annotations

import builtins
import sys
import types

import pytest
from flask import Flask
from flask_authsvc import Authsvc, ConfigError, read_settings
from flask_authsvc.settings import OIDC, PROXY
from flask_login import LoginManager

BASE = {"AUTHSVC_URL": "https://auth.example.com", "AUTHSVC_MODE": "proxy", "AUTHSVC_TRUSTED_PROXIES": "127.0.0.1"}
OIDC_BASE = {"AUTHSVC_URL": "https://auth.example.com", "AUTHSVC_MODE": "oidc", "AUTHSVC_CLIENT_ID": "microblog"}


def problem(config) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        read_settings(config)
    return raised.value


def init(config) -> ConfigError:
    app = Flask(__name__)
    app.config.update(config)
    with pytest.raises(ConfigError) as raised:
        Authsvc(app, LoginManager(app))
    return raised.value


def test_sound_proxy_settings():
    settings = read_settings({**BASE, "AUTHSVC_URL": "https://auth.example.com/"})
    assert settings.mode == PROXY and settings.url == "https://auth.example.com"


def test_mode_defaults_to_proxy_which_still_needs_trusted_proxies():
    assert problem({"AUTHSVC_URL": "https://auth.example.com"}).setting == "AUTHSVC_TRUSTED_PROXIES"


# --- AUTHSVC_URL ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [None, "", "auth.example.com", "//auth.example.com", "ftp://auth.example.com",
                                 "javascript:alert(1)", "http://auth.example.com", "https://", "https://user:pw@auth.example.com",
                                 "https://evil.example@auth.example.com", "https://auth.example.com/?next=x",
                                 "https://auth.example.com/#x", "https://auth.example.com:99999", "https://auth.exa mple.com",
                                 "https://auth.example.com\n", "https://аuth.example.com", 42, ["https://auth.example.com"]])
def test_unusable_authsvc_url_is_refused(url):
    assert problem({**BASE, "AUTHSVC_URL": url}).setting == "AUTHSVC_URL"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000/", "http://[::1]:8000", "https://auth.example.com/sso"])
def test_http_only_on_loopback_and_paths_are_kept(url):
    assert read_settings({**BASE, "AUTHSVC_URL": url}).url == url.rstrip("/")


# --- AUTHSVC_MODE, AUTHSVC_TRUSTED_PROXIES ------------------------------------------------------------

@pytest.mark.parametrize("mode", ["", "PROXY", "proxy ", "none", "header", None, True])
def test_unknown_mode_is_refused(mode):
    assert problem({**BASE, "AUTHSVC_MODE": mode}).setting == "AUTHSVC_MODE"


@pytest.mark.parametrize("value", [None, "", "0.0.0.0/0", "::/0", "*", "10.0.0.1/24", 1, True, {"a": 1}])
def test_missing_or_world_trusting_proxies_are_refused(value):
    config = {**BASE, "AUTHSVC_TRUSTED_PROXIES": value}
    if value is None:
        del config["AUTHSVC_TRUSTED_PROXIES"]
    error = problem(config)
    assert error.setting == "AUTHSVC_TRUSTED_PROXIES"
    assert str(error).startswith("AUTHSVC_TRUSTED_PROXIES ")


def test_misspelt_setting_is_refused_with_a_suggestion():
    error = problem({**BASE, "AUTHSVC_TRUSTED_PROXY": "127.0.0.1"})
    assert error.setting == "AUTHSVC_TRUSTED_PROXY"
    assert "did you mean AUTHSVC_TRUSTED_PROXIES" in str(error)


# --- the OIDC mode's settings -------------------------------------------------------------------------

def test_sound_oidc_settings():
    settings = read_settings({**OIDC_BASE, "AUTHSVC_SCOPES": "openid profile email"})
    assert settings.mode == OIDC and settings.client_id == "microblog" and settings.client_secret is None
    assert settings.scopes == ("openid", "profile", "email")


@pytest.mark.parametrize("changes, setting", [
    ({"AUTHSVC_CLIENT_ID": None}, "AUTHSVC_CLIENT_ID"),
    ({"AUTHSVC_CLIENT_ID": "  "}, "AUTHSVC_CLIENT_ID"),
    ({"AUTHSVC_CLIENT_ID": 5}, "AUTHSVC_CLIENT_ID"),
    ({"AUTHSVC_CLIENT_SECRET": ""}, "AUTHSVC_CLIENT_SECRET"),
    ({"AUTHSVC_SCOPES": "profile email"}, "AUTHSVC_SCOPES"),
    ({"AUTHSVC_SCOPES": 3}, "AUTHSVC_SCOPES"),
    ({"AUTHSVC_TRUSTED_PROXIES": "127.0.0.1"}, "AUTHSVC_TRUSTED_PROXIES"),
    ({"AUTHSVC_URL": "http://auth.example.com"}, "AUTHSVC_URL"),
])
def test_unusable_oidc_settings_are_refused(changes, setting):
    config = {**OIDC_BASE, **changes}
    config = {k: v for k, v in config.items() if v is not None}
    assert problem(config).setting == setting


# --- at init_app ----------------------------------------------------------------------------------------

def test_init_app_refuses_a_misconfiguration_naming_the_setting():
    error = init({"AUTHSVC_URL": "https://auth.example.com"})
    assert error.setting == "AUTHSVC_TRUSTED_PROXIES" and "AUTHSVC_TRUSTED_PROXIES" in str(error)


def test_init_app_without_a_login_manager_is_refused():
    app = Flask(__name__)
    app.config.update(BASE)
    with pytest.raises(ConfigError, match="LoginManager"):
        Authsvc(app)


def test_init_app_finds_the_apps_login_manager():
    app = Flask(__name__)
    app.config.update(BASE)
    login = LoginManager(app)
    assert Authsvc(app).login_manager is login


def test_oidc_mode_checks_its_settings_before_anything_else():
    assert init({"AUTHSVC_URL": "https://auth.example.com", "AUTHSVC_MODE": "oidc"}).setting == "AUTHSVC_CLIENT_ID"


def test_oidc_mode_without_authlib_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_authlib(name, *args, **kwargs):
        if name == "authlib" or name.startswith("authlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_authlib)
    error = init(OIDC_BASE)
    assert error.setting == "AUTHSVC_MODE" and "Flask-Authsvc[oidc]" in str(error)


def test_oidc_mode_without_a_secret_key_is_refused(monkeypatch):
    """The OIDC mode keeps the sign-in in Flask's signed session."""
    monkeypatch.setitem(sys.modules, "authlib", types.ModuleType("authlib"))  # as if the extra were installed
    error = init(OIDC_BASE)
    assert error.setting == "SECRET_KEY"


@pytest.mark.parametrize("key", ["dev", "you-will-never-guess", "k" * 31, b"\x00" * 31, "\u00e9" * 15])
def test_oidc_mode_refuses_a_guessable_short_secret_key(key):
    """SECRET_KEY alone signs the sign-in kept in Flask's session cookie: a short one ("dev", a
    tutorial's) is guessed offline from any one cookie (flask-unsign's word lists), and a cookie
    forged with it signs anyone in as anyone, with any groups and mfa."""
    pytest.importorskip("authlib")
    error = init({**OIDC_BASE, "SECRET_KEY": key})
    assert error.setting == "SECRET_KEY" and "under 32" in str(error) and "secrets.token_hex(32)" in str(error)
    # Flask 3.1 also accepts a cookie signed with any of SECRET_KEY_FALLBACKS
    error = init({**OIDC_BASE, "SECRET_KEY": "k" * 32, "SECRET_KEY_FALLBACKS": ["o" * 32, key]})
    assert error.setting == "SECRET_KEY_FALLBACKS" and "under 32" in str(error)


@pytest.mark.parametrize("key", ["k" * 32, b"\x00" * 32, "\u00e9" * 16])
def test_oidc_mode_takes_a_secret_key_of_32_bytes(key):
    pytest.importorskip("authlib")
    app = Flask(__name__)
    app.config.update({**OIDC_BASE, "SECRET_KEY": key, "SECRET_KEY_FALLBACKS": [key]})
    Authsvc(app, LoginManager(app))       # no ConfigError
