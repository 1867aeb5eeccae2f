"""A gunicorn config file (``gunicorn -c tests/integration/example_test_names.py``): in the server
and its workers, every *.example.test name resolves to 127.0.0.1, as
:func:`tests.integration.conftest.example_test_resolves_to_loopback` makes it for the tests' own
requests. The microblog in the OIDC mode talks to authsvc at https://auth.example.test:<port> (its
discovery, keys and token endpoint) through nginx; TLS still checks that name against the test CA.
Nothing else of gunicorn's configuration is set here."""

import socket

_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.lower().rstrip(".").endswith(".example.test"):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
