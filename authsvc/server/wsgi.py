"""WSGI entry point for gunicorn (``authsvc serve``): ``authsvc.server.wsgi:app``.

gunicorn imports this module in each worker process, on the thread its request threads are later
started from; they inherit that thread's priority. So the argon2 threads of known devices and
password changes are started first, at the worker's priority, and then this thread is lowered by
``argon2.request_nice``: a flood's refusals cannot take a returning user's CPU (docs/throttle.md).
"""

import sys

from authsvc.core.config import ConfigError
from authsvc.core.hashing import lower_thread_priority
from authsvc.web.app import StartupRefused, create_app

try:
    app = create_app()
except (StartupRefused, ConfigError) as exc:
    print(f"authsvc: {exc}", file=sys.stderr)
    raise SystemExit(1) from None

_services = app.extensions["authsvc"]
_services.hasher.start_base_threads()
lower_thread_priority(_services.policy.argon2.request_nice)
