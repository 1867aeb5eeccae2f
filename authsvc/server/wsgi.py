"""WSGI entry point for gunicorn (``authsvc serve``): ``authsvc.server.wsgi:app``."""

import sys

from authsvc.web.app import StartupRefused, create_app
from authsvc.core.config import ConfigError

try:
    app = create_app()
except (StartupRefused, ConfigError) as exc:
    print(f"authsvc: {exc}", file=sys.stderr)
    raise SystemExit(1) from None
