"""A deadline for a whole HTTP exchange on one socket (the probe's own copy of
``authsvc.core.deadline``: the probe imports only the standard library and itself, so a team can
run it where nothing else of authsvc is installed).

A socket timeout bounds each read, not the exchange: a peer that sends one byte inside every
timeout can hold a request for as long as it likes (a back-channel receiver holding the one sender
thread that delivers every client's logout; a hostile server holding the probe). :func:`deadline`
shuts the socket down when the time is up, which wakes a read blocked on it at once; the caller
then sees the error any dropped connection gives, or a short answer, and the event it was handed
says the time ran out.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


def _shut(sock: socket.socket, expired: threading.Event) -> None:
    expired.set()
    with contextlib.suppress(OSError):  # already closed: nothing to wake
        sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def deadline(sock: socket.socket, seconds: float) -> Iterator[threading.Event]:
    """Within the block, ``sock`` is shut down once ``seconds`` have passed; the event yielded is
    set when that happened (whatever was read by then is not the whole answer)."""
    expired = threading.Event()
    timer = threading.Timer(seconds, _shut, (sock, expired))
    timer.daemon = True
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()
