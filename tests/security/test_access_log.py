"""gunicorn's access and error lines under ``authsvc serve`` (authsvc.server.access_log), without a server:
every value a client controls ends up JSON-escaped on one line (log injection, ASVS 16.4.1).
tests/integration/test_log_injection.py makes the same attacks against the real server."""

from __future__ import annotations

import datetime
import io
import json
import logging
import socket
import types

import pytest
from gunicorn.config import Config
from gunicorn.http import errors
from gunicorn.workers.base import Worker

from authsvc.server.access_log import JsonLogger, access_line, without_request_data, wsgi_text
from authsvc.server.cli import gunicorn_argv

HOSTILE = ["\n", "\r", "\r\n", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1b[2K",
           "\x00", "\x7f", '"', "\\", "\ud800"]


@pytest.mark.asvs("V16.4.1")
@pytest.mark.parametrize("bad", HOSTILE, ids=[repr(c) for c in HOSTILE])
def test_access_line_is_one_ascii_json_line_whatever_the_path_method_or_address_hold(bad):
    text = f"/x{bad}{{\"event\":\"login_success\"}}{bad}"
    line = access_line(now=1.5, client_ip=bad, method=bad, path=text, status=200, size=1, seconds=0.25,
                       request_id=bad)
    assert line.isascii() and len(line.splitlines()) == 1 and line.isprintable()
    obj = json.loads(line)
    assert obj["path"] == text and obj["method"] == bad and obj["logger"] == "gunicorn.access"


def test_access_line_bounds_the_path():
    obj = json.loads(access_line(now=0, client_ip=None, method="GET", path="/" + "a" * 10000, status=404,
                                 size=None, seconds=0, request_id=None))
    assert len(obj["path"]) < 2100 and obj["path"].endswith("...(truncated)")


@pytest.mark.parametrize(("wsgi", "shown"), [
    ("/caf\xc3\xa9", "/café"),          # UTF-8 bytes as WSGI's latin-1 string
    ("/x\x85", "/x\\x85"),              # not UTF-8: the byte stays visible
    ("/x\xc2\x85", "/x\x85"),           # NEL as UTF-8: decoded, then escaped by JSON
    ("/\u2028", "/\u2028"),             # not a WSGI string at all: kept
])
def test_wsgi_text_shows_what_the_client_sent(wsgi, shown):
    assert wsgi_text(wsgi) == shown


class _Resp:
    status = "404 NOT FOUND"
    sent = 12
    headers = (("Content-Type", "text/html"), ("X-Request-ID", "rid-1"))


@pytest.fixture
def gunicorn_logger():
    """gunicorn's logger as `authsvc serve` configures it, writing to two buffers."""
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("errorlog", "-")
    log = JsonLogger(cfg)
    access, error = io.StringIO(), io.StringIO()
    for handler in log.access_log.handlers:
        handler.setStream(access)
    for handler in log.error_log.handlers:
        handler.setStream(error)
    yield log, access, error
    for name in ("gunicorn.access", "gunicorn.error"):  # gunicorn's loggers are process-wide
        logging.getLogger(name).handlers.clear()


@pytest.mark.asvs("V16.4.1")
def test_json_logger_writes_gunicorn_access_and_error_lines_as_json_objects(gunicorn_logger):
    log, access, error = gunicorn_logger
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x\n{\"forged\":1}\n", "QUERY_STRING": "next=secret-query",
               "REMOTE_ADDR": "192.0.2.5", "HTTP_COOKIE": "s=cookie-canary"}
    log.access(_Resp(), None, environ, datetime.timedelta(seconds=1, microseconds=500))
    log.warning("Invalid request from ip=%s: %s", "192.0.2.5", "Invalid HTTP request line: 'GET /\x85\n'")
    (line,) = access.getvalue().splitlines()
    obj = json.loads(line)
    assert obj["path"] == "/x\n{\"forged\":1}\n" and obj["status"] == 404 and obj["bytes"] == 12
    assert obj["request_id"] == "rid-1" and obj["client_ip"] == "192.0.2.5" and obj["seconds"] == 1.0005
    assert "secret-query" not in line and "cookie-canary" not in line
    (err,) = error.getvalue().splitlines()
    assert json.loads(err)["logger"] == "gunicorn.error" and json.loads(err)["level"] == "warning"


TOKEN = "eyJhbGciOiJFUzI1NiJ9.ID-TOKEN-CANARY.sig"
COOKIE = "__Host-authsvc_session=SESSION-COOKIE-CANARY"


@pytest.mark.asvs("V16.2.5")
@pytest.mark.parametrize("refused", [
    errors.InvalidRequestLine(f"GET /oauth/logout?id_token_hint={TOKEN}&state=\xc3\xa9 HTTP/1.1"),
    errors.InvalidHeaderName(f"Cookie {COOKIE}"),
    errors.InvalidHeader(f"Cookie: {COOKIE}\x00"),
    errors.ObsoleteFolding(f"Cookie: {COOKIE}"),
    errors.InvalidRequestMethod(f"G\x00T /?token={TOKEN}"),
    errors.InvalidHTTPVersion(f"HTTP/9 {TOKEN}"),
    errors.UnsupportedTransferCoding(f"chunked, {COOKIE}"),
], ids=lambda exc: type(exc).__name__)
def test_a_request_gunicorn_refuses_is_logged_without_what_it_quoted(gunicorn_logger, refused):
    # gunicorn's Worker.handle_error itself: it logs "Invalid request from ip=...: <str(exc)>", and
    # str(exc) quotes the request line or header line as sent, query string and cookie values
    # included (found by review, session 14).
    log, _access, error = gunicorn_logger
    server, client = socket.socketpair()
    with server, client:
        Worker.handle_error(types.SimpleNamespace(log=log, cfg=log.cfg), None, server, ("192.0.2.5", 4000), refused)
    (line,) = error.getvalue().splitlines()
    message = json.loads(line)["message"]
    assert "CANARY" not in line, line
    assert message.startswith("Invalid request from ip=192.0.2.5: ") and str(refused).split(":")[0] in message


def test_a_request_that_fails_is_logged_without_its_query(gunicorn_logger):
    log, _access, error = gunicorn_logger
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("Error handling request %s %s", "GET", f"/oauth/logout?id_token_hint={TOKEN}")
    assert "CANARY" not in error.getvalue() and "/oauth/logout?(not logged)" in error.getvalue()


@pytest.mark.parametrize("message", ["Booting worker with pid: 7", "Invalid request from ip=192.0.2.5: no quote here",
                                     "Worker exiting (pid: 7)", "Error handling request (no URI read)"])
def test_other_gunicorn_messages_are_logged_as_they_are(message):
    assert without_request_data(message) == message


def test_serve_runs_gunicorn_with_the_json_logger_and_no_plain_access_format():
    argv = gunicorn_argv("127.0.0.1:8000", 2)
    assert argv[argv.index("--logger-class") + 1] == "authsvc.server.access_log.JsonLogger"
    assert "--access-logformat" not in argv and argv[argv.index("--access-logfile") + 1] == "-"
