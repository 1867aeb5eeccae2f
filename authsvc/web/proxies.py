"""Which forwarding headers to believe: exactly ``AUTHSVC_TRUSTED_PROXIES`` hops, sent by a peer in
``AUTHSVC_TRUSTED_PROXY_NETWORKS``, else none.

With 0 trusted proxies, or a TCP peer outside the trusted networks (someone reaching the port
directly), every ``X-Forwarded-*``, ``X-Original-*``, ``X-Real-IP`` and ``X-Request-ID`` header is
deleted before the application sees it, so a client can neither fake its address for the rate
limits nor fake HTTPS, nor fake the URL a forward-auth request is about, nor forge a request id.
With N > 0 and a trusted peer, Werkzeug's ProxyFix takes the client address and scheme from the
N-th hop, and the raw ``X-Forwarded-Proto`` is then removed so that nothing downstream
(Flask-Talisman reads it raw) can be fooled by a client-added value.
"""

from __future__ import annotations

import functools

from werkzeug.middleware.proxy_fix import ProxyFix

from authsvc.rules.proxy_networks import Network, is_trusted_proxy

FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                      "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_X_FORWARDED_URI",
                      "HTTP_X_FORWARDED_METHOD", "HTTP_X_ORIGINAL_URL", "HTTP_X_ORIGINAL_METHOD",
                      "HTTP_X_REAL_IP", "HTTP_FORWARDED", "HTTP_X_REQUEST_ID")


class TrustedProxies:
    def __init__(self, app, hops: int, networks: tuple[Network, ...] = ()) -> None:
        self.hops = hops
        self.networks = networks
        # Asked on every request, about the same few peers: the answer depends on the address alone.
        self.trusted = functools.lru_cache(maxsize=1024)(lambda peer: is_trusted_proxy(peer, networks))
        self.app = app
        self.fixed = ProxyFix(self._drop_raw_proto, x_for=hops, x_proto=hops) if hops else None

    def _drop_raw_proto(self, environ, start_response):
        environ.pop("HTTP_X_FORWARDED_PROTO", None)
        return self.app(environ, start_response)

    def __call__(self, environ, start_response):
        if self.fixed is not None and self.trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        for name in FORWARDING_HEADERS:
            environ.pop(name, None)
        return self.app(environ, start_response)
