"""Which forwarding headers to believe: exactly ``AUTHSVC_TRUSTED_PROXIES`` hops, else none.

With 0 trusted proxies every ``X-Forwarded-*``, ``X-Original-*`` and ``X-Real-IP`` header is deleted
before the application sees it, so a client can neither fake its address for the rate limits nor
fake HTTPS, nor fake the URL a forward-auth request is about. With N > 0, Werkzeug's ProxyFix takes
the client address and scheme from the N-th hop, and the raw ``X-Forwarded-Proto`` is then removed
so that nothing downstream (Flask-Talisman reads it raw) can be fooled by a client-added value.
"""

from __future__ import annotations

from werkzeug.middleware.proxy_fix import ProxyFix

FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                      "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_X_FORWARDED_URI",
                      "HTTP_X_FORWARDED_METHOD", "HTTP_X_ORIGINAL_URL", "HTTP_X_ORIGINAL_METHOD",
                      "HTTP_X_REAL_IP", "HTTP_FORWARDED", "HTTP_X_REQUEST_ID")


class TrustedProxies:
    def __init__(self, app, hops: int) -> None:
        self.hops = hops
        self.app = app
        self.fixed = ProxyFix(self._drop_raw_proto, x_for=hops, x_proto=hops) if hops else None

    def _drop_raw_proto(self, environ, start_response):
        environ.pop("HTTP_X_FORWARDED_PROTO", None)
        return self.app(environ, start_response)

    def __call__(self, environ, start_response):
        if self.fixed is not None:
            return self.fixed(environ, start_response)
        for name in FORWARDING_HEADERS:
            environ.pop(name, None)
        return self.app(environ, start_response)
