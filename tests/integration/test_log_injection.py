"""Log injection against the real server: ``authsvc serve`` (gunicorn, production settings, one
trusted proxy), its standard output and error merged as journald or ``docker logs`` would.

The attack (review finding 7): gunicorn logged the percent-decoded path, so ``/x%0A{"event":...}``
wrote a line of the client's choosing between the audit events, for instance a forged
``login_success``. Every request below carries such a forged event, percent-encoded or raw, behind
each line separator a log reader might honour (LF, CR, CRLF, NEL, U+2028/9, VT, FF, the ASCII
file/group/record separators) or terminal control (ESC), in the path and in the other fields a line
may hold (User-Agent, X-Request-ID, ``next``). Afterwards every line the server wrote must be one
JSON object, no object may be a forged one, and each forged text must be found, escaped, inside the
line that logged its request.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import quote

import pytest

from tests.integration.conftest import served_env, serving, tail

pytestmark = pytest.mark.integration

# What a log reader may treat as the end of a line (str.splitlines' set) plus terminal escapes.
SEPARATORS = {
    "lf": "\n", "cr": "\r", "crlf": "\r\n", "nel": "\x85", "ls": "\u2028", "ps": "\u2029",
    "vt": "\x0b", "ff": "\x0c", "fs": "\x1c", "gs": "\x1d", "rs": "\x1e", "esc": "\x1b[2K\r",
}


def forged(tag: str) -> str:
    """An audit line as authsvc writes them, naming the test case (FORGED-<tag>)."""
    return json.dumps({"ts": "2027-01-15T08:00:00.000Z", "event": "login_success", "outcome": "success",
                       "user_id": 1, "client_ip": "192.0.2.1", "forged": f"FORGED-{tag}"}, separators=(",", ":"))


def raw_request(port: int, target: bytes, headers: dict[str, bytes] | None = None) -> bytes:
    """One HTTP/1.1 request with ``target`` as sent (no client-side encoding); the status line."""
    head = b"GET " + target + b" HTTP/1.1\r\nHost: auth.example.test\r\nConnection: close\r\n"
    head += b"X-Forwarded-For: 198.51.100.20\r\nX-Forwarded-Proto: https\r\n"
    for name, value in (headers or {}).items():
        head += name.encode() + b": " + value + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + b"\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def lines(log, start: int = 0) -> list[str]:
    """The log from byte ``start`` on, split as the most liberal reader would: every separator
    above ends a line."""
    with open(log, "rb") as fh:
        fh.seek(start)
        return fh.read().decode("utf-8", errors="replace").splitlines()


def objects(log, start: int = 0) -> list[dict]:
    """Every line of the log as a JSON object; fails naming the first line that is not one."""
    out = []
    for line in lines(log, start):
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        assert isinstance(obj, dict), f"a line of the server's log is not one JSON object: {line!r}"
        out.append(obj)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("logs")
    with serving(folder, served_env(folder), user=None) as served:
        yield served


# A page whose audit event (redirect_rejected) carries the user agent and request id.
REJECTED_NEXT = b"/login?next=https%3A%2F%2Fevil.example%2F"
ATTACKS = []
for _name, _sep in SEPARATORS.items():
    # percent-encoded in the path (decoded by gunicorn into PATH_INFO), as UTF-8
    ATTACKS.append(pytest.param("path", lambda tag, sep=_sep: b"/x" + quote(sep + forged(tag) + sep).encode(),
                                {}, id=f"path-encoded-{_name}"))
    # in ?next=, which a rejected redirect puts in an audit event (the query is never in the access line)
    ATTACKS.append(pytest.param("next", lambda tag, sep=_sep: b"/login?next=" + quote(
        "https://evil.example/" + sep + forged(tag) + sep, safe="").encode(), {}, id=f"next-encoded-{_name}"))
# raw bytes (no CR/LF: HTTP framing has them end the request line or header)
for _name, _raw in {"esc": b"\x1b[2K", "nel-latin1": b"\x85", "nel-utf8": b"\xc2\x85", "ls-utf8": b"\xe2\x80\xa8",
                    "vt": b"\x0b", "ff": b"\x0c", "rs": b"\x1e"}.items():
    ATTACKS.append(pytest.param("path", lambda tag, raw=_raw: b"/x" + raw + forged(tag).replace(" ", "").encode()
                                + raw, {}, id=f"path-raw-{_name}"))
    ATTACKS.append(pytest.param("user-agent", lambda tag, raw=_raw: REJECTED_NEXT,
                                {"User-Agent": lambda tag, raw=_raw: b"UA" + raw + forged(tag).encode() + raw},
                                id=f"user-agent-raw-{_name}"))
    ATTACKS.append(pytest.param("request-id", lambda tag, raw=_raw: REJECTED_NEXT,
                                {"X-Request-ID": lambda tag, raw=_raw: b"r" + raw + forged(tag).encode()},
                                id=f"request-id-raw-{_name}"))


@pytest.mark.asvs("V16.4.1")
@pytest.mark.parametrize(("field", "target", "headers"), ATTACKS)
def test_no_request_can_write_a_log_line_of_its_own(server, field, target, headers, request):
    tag = request.node.callspec.id
    start = server.log.stat().st_size  # judge only what this request makes the server write
    status = raw_request(server.port, target(tag), {name: make(tag) for name, make in headers.items()})
    assert status.startswith(b"HTTP/1.1 "), status
    # Read after the answer: the server writes a request's lines before it closes the connection.
    parsed = []
    for line in lines(server.log, start):
        try:
            parsed.append((line, json.loads(line)))
        except ValueError:
            parsed.append((line, None))
    forged_lines = [obj for _line, obj in parsed if isinstance(obj, dict) and "forged" in obj]
    assert forged_lines == [], f"{tag}: a client wrote its own log line: {forged_lines}"
    not_json = [line for line, obj in parsed if not isinstance(obj, dict)]
    assert not_json == [], f"{tag}: lines of the server's log that are not one JSON object: {not_json[:5]}"
    if b" 400 " not in status:  # gunicorn took the request: its text is in the log, escaped
        assert any(f"FORGED-{tag}" in json.dumps(obj) for _line, obj in parsed) or field == "request-id", \
            tail(server.log)


def test_the_access_line_is_json_with_the_request_id_and_never_the_query_or_cookies(server):
    target = b"/login?next=%2Fsecret-query-value"
    status = raw_request(server.port, target, {"Cookie": b"__Host-authsvc_session=cookie-canary-value",
                                               "X-Request-ID": b"req-id-for-the-access-line"})
    assert status.startswith(b"HTTP/1.1 200"), status
    access = [o for o in objects(server.log) if o.get("logger") == "gunicorn.access"
              and o.get("request_id") == "req-id-for-the-access-line"]
    assert len(access) == 1, tail(server.log)
    line = access[0]
    assert line["method"] == "GET" and line["path"] == "/login" and line["status"] == 200
    assert line["client_ip"] and isinstance(line["seconds"], float) and line["ts"].endswith("Z")
    text = json.dumps(line)
    assert "secret-query-value" not in text and "cookie-canary-value" not in text


def test_gunicorn_own_lines_are_json_too(server):
    booted = [o for o in objects(server.log) if o.get("logger") == "gunicorn.error"
              and "Booting worker with pid" in o.get("message", "")]
    assert booted, tail(server.log)
