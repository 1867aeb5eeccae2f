import os

basedir = os.path.abspath(os.path.dirname(__file__))

# The tutorial's SECRET_KEY, CSRF_ENABLED and OPENID_PROVIDERS are gone: the app has no login form
# and keeps no login state. Each setting can be overridden by an environment variable named
# MICROBLOG_<SETTING> (Flask's from_prefixed_env), e.g. MICROBLOG_AUTHSVC_URL.
SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.path.join(basedir, "app.db")

AUTHSVC_URL = "https://auth.example.com"   # authsvc's public URL
AUTHSVC_MODE = "proxy"                     # behind nginx's auth_request (deploy/nginx/authsvc.conf)
AUTHSVC_TRUSTED_PROXIES = "127.0.0.1"      # nginx, on this host: the only peer whose X-Auth-* count
