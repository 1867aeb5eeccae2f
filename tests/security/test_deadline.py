"""An HTTP exchange on one socket ends at its deadline, however the peer paces it.

A socket timeout bounds each read: a peer sending one byte inside every timeout could hold the one
thread that delivers every client's back-channel logout (or the probe) as long as it liked. These
tests drip an answer far slower than the deadline allows and check the exchange ends near the
deadline, as a failure, not as the peer's answer. (Bounds are generous: a slow machine passes, the
drip itself would take ten times longer.)
"""

from __future__ import annotations

import socket
import threading
import time

from authsvc.core.deadline import deadline
from authsvc.core.oidc.logout import post_form

DRIP_BYTES = 40          # at 0.5 s each: 20 s, against deadlines of 1-2 s


def dripping_server(first: bytes) -> tuple[int, threading.Event]:
    """A loopback HTTP server that sends ``first`` and then one byte every 0.5 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(first)
            for _ in range(DRIP_BYTES):
                if stop.wait(0.5):
                    break
                try:
                    conn.sendall(b"X")
                except OSError:
                    break
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], stop


def test_a_back_channel_receiver_dripping_its_answer_is_a_timeout_at_twice_the_timeout():
    port, stop = dripping_server(b"HTTP/1.1 200 OK\r\n")
    started = time.monotonic()
    answer = post_form(f"http://127.0.0.1:{port}/backchannel", b"logout_token=x", 1.0)
    took = time.monotonic() - started
    stop.set()
    assert answer == (None, "timeout"), answer
    assert took < 15, took  # a 2 s deadline; the drip would take 20 s


def test_the_deadline_wakes_a_blocked_read_and_says_it_expired():
    near, far = socket.socketpair()
    with near, far:
        started = time.monotonic()
        with deadline(near, 0.3) as expired:
            data = near.recv(10)  # nothing comes: only the deadline ends this read
        assert data == b"" and expired.is_set() and time.monotonic() - started < 5


def test_an_exchange_done_in_time_is_not_marked_expired():
    near, far = socket.socketpair()
    with near, far:
        far.sendall(b"answer")
        with deadline(near, 5) as expired:
            assert near.recv(10) == b"answer"
        assert not expired.is_set()


def test_the_probes_copy_is_the_same_code():
    """The probe imports only the standard library and itself (tests/meta/test_layers.py), so it has
    its own copy of the deadline: the same code after the module docstring, kept so."""
    import ast
    import inspect

    from authsvc.core import deadline as core_copy
    from authsvc.probe import deadline as probe_copy

    def body(module) -> str:
        tree = ast.parse(inspect.getsource(module))
        tree.body = tree.body[1:]  # the docstring
        return ast.dump(tree)

    assert body(core_copy) == body(probe_copy)
