"""A small app using the extension the way the microblog does, with the TCP peer chosen per request."""

from __future__ import annotations

from flask import Flask, render_template_string
from flask_authsvc import Authsvc
from flask_login import LoginManager, UserMixin, current_user, login_required

PROXY = "10.0.0.5"          # the trusted forward-auth proxy
STRANGER = "203.0.113.9"    # anyone else
AUTH_URL = "https://auth.example.test"
ALICE = {"X-Auth-User": "alice", "X-Auth-User-Id": "7", "X-Auth-Methods": "pwd"}


class User(UserMixin):
    def __init__(self, username: str):
        self.id = username
        self.username = username


def make_app(**config) -> tuple[Flask, Authsvc]:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test-only-" + "k" * 32, AUTHSVC_URL=AUTH_URL, AUTHSVC_MODE="proxy",
                      AUTHSVC_TRUSTED_PROXIES=f"{PROXY},::1")
    app.config.update(config)
    login = LoginManager(app)
    authsvc = Authsvc(app, login)
    app.loaded = []   # identities the user loader was called with

    @authsvc.user_loader
    def user_for(identity):
        app.loaded.append(identity)
        return None if identity.username == "stranger" else User(identity.username)

    @app.get("/")
    def index():
        return render_template_string(
            "{% if current_user.is_authenticated %}Hi, {{ current_user.username }}!{% else %}Hello, guest{% endif %}"
            " {{ authsvc.logout_form() }}")

    @app.route("/private", methods=["GET", "POST"])
    @login_required
    def private():
        return f"private page of {current_user.username}"

    @app.get("/admin")
    @authsvc.required(groups=["admins", "ops"])
    def admin():
        return "admin page"

    @app.get("/secure")
    @authsvc.required(mfa=True)
    def secure():
        return "needs two factors"

    @app.errorhandler(401)
    @app.errorhandler(403)
    def error_page(error):  # an error page that asks who the user is, as base templates do
        who = current_user.username if current_user.is_authenticated else "nobody"
        return f"error {error.code} for {who}", error.code

    return app, authsvc


def get(client, path, headers=None, peer=PROXY, raw=None, **kwargs):
    """GET from ``peer``; ``raw`` headers go straight into the WSGI environ (as a server would hand
    over a value with a newline, which Werkzeug's test client refuses to send)."""
    environ = {"REMOTE_ADDR": peer}
    environ.update({"HTTP_" + name.upper().replace("-", "_"): value for name, value in (raw or {}).items()})
    return client.get(path, headers=headers or {}, environ_base=environ, **kwargs)
