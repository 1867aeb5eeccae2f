import os

basedir = os.path.abspath(os.path.dirname(__file__))

# The tutorial's CSRF_ENABLED and OPENID_PROVIDERS are gone: the app has no login form. Each setting
# can be overridden by an environment variable named MICROBLOG_<SETTING> (Flask's
# from_prefixed_env), e.g. MICROBLOG_AUTHSVC_URL.
SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.path.join(basedir, "app.db")

AUTHSVC_URL = "https://auth.example.com"   # authsvc's public URL
AUTHSVC_MODE = os.environ.get("MICROBLOG_AUTHSVC_MODE", "proxy")
if AUTHSVC_MODE == "proxy":
    # Behind nginx's auth_request (deploy/nginx/authsvc.conf); the app keeps no login state.
    AUTHSVC_TRUSTED_PROXIES = "127.0.0.1"  # nginx, on this host: the only peer whose X-Auth-* count
else:
    # "oidc": an OpenID Connect client of authsvc, registered with
    #   authsvc oidc client add Microblog --redirect-uri https://blog.example.com/authsvc/callback
    #       --scopes "openid profile groups"   (groups only if MICROBLOG_AUTHSVC_SCOPES asks for it)
    # and given MICROBLOG_AUTHSVC_CLIENT_ID, MICROBLOG_AUTHSVC_CLIENT_SECRET and MICROBLOG_SECRET_KEY
    # (the sign-in is kept in Flask's signed session cookie). Served over https, also
    # MICROBLOG_SESSION_COOKIE_SECURE=true and MICROBLOG_SESSION_COOKIE_NAME=__Host-session: without
    # them no sign-in starts (503) and the log names the setting (a sibling subdomain could plant a
    # session cookie of any other name). On plain http (loopback, run.sh --oidc) neither is needed.
    AUTHSVC_SCOPES = "openid profile"
