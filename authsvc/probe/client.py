"""The probe's only network code: one HTTPS request at a time, never following a redirect, sending
headers exactly as given (names in any case, with underscores, repeated), and a small cookie jar.

Standard library only (http.client, ssl): the probe must judge a deployment without a browser or
an HTTP library that normalises what it sends. Certificates are always verified (the system's CA
store, or ``ca_file``); ``resolve`` pins host:port to an address, as curl's ``--resolve`` does, for
a staging server without DNS.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from authsvc.probe.cookies import SetCookie, domain_matches, parse_set_cookie
from authsvc.probe.deadline import deadline

MAX_BODY = 1 << 20  # a login page or an app page the probe reads; more is cut off
# A whole exchange takes at most this many --timeout: the timeout bounds each read, and a server
# that paces its answer out a byte at a time must not hold the probe past its own limit.
DEADLINE_FACTOR = 4


class ProbeError(Exception):
    """The deployment could not be asked (DNS, TCP, TLS, a malformed answer): no verdict."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), or None."""
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def set_cookies(self) -> list[SetCookie]:
        return [c for c in map(parse_set_cookie, self.all("Set-Cookie")) if c is not None]


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, host lower case without a trailing dot."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise ProbeError(f"bad port in {url!r}") from exc
    return scheme, (parts.hostname or "").rstrip("."), port


@dataclass
class Jar:
    """The cookies a browser would keep, just enough for a sign-in: host-only or Domain cookies,
    Path prefixes, Secure, deletion. No public-suffix list (the probe talks to two hosts)."""

    cookies: dict[tuple[str, str, str], tuple[SetCookie, bool]] = field(default_factory=dict)

    def take(self, response: Response) -> None:
        host = origin_of(response.url)[1]
        for cookie in response.set_cookies:
            domain = cookie.domain
            if domain is not None and not domain_matches(host, domain):
                continue  # a browser refuses a Domain that does not cover the host
            key = (cookie.name, domain or host, cookie.path)
            if cookie.deletes:
                self.cookies.pop(key, None)
            else:
                self.cookies[key] = (cookie, domain is None)

    def header(self, url: str) -> str | None:
        """The Cookie header a browser sends to ``url``."""
        scheme, host, _ = origin_of(url)
        path = urlsplit(url).path or "/"
        sent = []
        for (name, domain, cookie_path), (cookie, host_only) in self.cookies.items():
            if (host == domain if host_only else domain_matches(host, domain)) and \
                    (path == cookie_path or path.startswith(cookie_path.rstrip("/") + "/")) and \
                    (scheme == "https" or not cookie.secure):
                sent.append(f"{name}={cookie.value}")
        return "; ".join(sent) or None

    def copy(self) -> Jar:
        return Jar(dict(self.cookies))

    def value(self, fragment: str) -> tuple[str, str] | None:
        """(name, value) of the first cookie whose name contains ``fragment``."""
        for (name, _, _), (cookie, _) in self.cookies.items():
            if fragment in name.lower():
                return name, cookie.value
        return None


class Client:
    def __init__(self, *, ca_file: str | None = None, resolve: dict[tuple[str, int], str] | None = None,
                 timeout: float = 10.0, user_agent: str = "authsvc-probe") -> None:
        self.context = ssl.create_default_context(cafile=ca_file)  # verifies the chain and the name
        self.resolve = dict(resolve or {})
        self.timeout = timeout
        self.user_agent = user_agent

    def request(self, method: str, url: str, headers: list[tuple[str, str]] | tuple = (),
                body: bytes | None = None, *, jar: Jar | None = None) -> Response:
        """Send one request; ``headers`` go out as given, after Host (and the jar's Cookie, and a
        User-Agent unless ``headers`` has one)."""
        scheme, host, port = origin_of(url)
        if scheme != "https":
            raise ProbeError(f"{url!r} is not https: the probe checks deployments over HTTPS only")
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        address = self.resolve.get((host, port), host)
        try:
            raw = socket.create_connection((address, port), timeout=self.timeout)
            sock = self.context.wrap_socket(raw, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(f"cannot connect to {host}:{port} ({type(exc).__name__}: {exc})") from exc
        conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self.context)
        conn.sock = sock
        try:
            with deadline(sock, DEADLINE_FACTOR * self.timeout) as expired:
                response = self._exchange(conn, method, url, target, parts, headers, body, jar)
        except (OSError, http.client.HTTPException) as exc:  # not ValueError: a header we cannot send is a bug
            raise ProbeError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()
        if expired.is_set():
            raise ProbeError(f"{method} {url}: no whole answer within {DEADLINE_FACTOR * self.timeout:g} s "
                             "(the server paced it out)")
        if jar is not None:
            jar.take(response)
        return response

    def _exchange(self, conn, method: str, url: str, target: str, parts, headers, body, jar) -> Response:
        """Write the request on ``conn`` and read its answer (at most MAX_BODY of the body)."""
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", parts.netloc.rsplit("@", 1)[-1])
        names = {name.lower() for name, _ in headers}
        if "user-agent" not in names:
            conn.putheader("User-Agent", self.user_agent)
        cookie = jar.header(url) if jar is not None else None
        if cookie and "cookie" not in names:
            conn.putheader("Cookie", cookie)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        data = answer.read(MAX_BODY)
        return Response(answer.status, tuple(answer.getheaders()), data, url)
