"""gunicorn's access and error lines under ``authsvc serve`` (authsvc.server.access_log), without a server:
every value a client controls ends up JSON-escaped on one line (log injection, ASVS 16.4.1).
tests/integration/test_log_injection.py makes the same attacks against the real server."""

from __future__ import annotations

import datetime
import io
import json
import logging

import pytest
from gunicorn.config import Config

from authsvc.server.access_log import JsonLogger, access_line, wsgi_text
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


def test_serve_runs_gunicorn_with_the_json_logger_and_no_plain_access_format():
    argv = gunicorn_argv("127.0.0.1:8000", 2)
    assert argv[argv.index("--logger-class") + 1] == "authsvc.server.access_log.JsonLogger"
    assert "--access-logformat" not in argv and argv[argv.index("--access-logfile") + 1] == "-"
