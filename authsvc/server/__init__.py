"""The server layer: how authsvc runs. The ``authsvc`` command (``cli``), the WSGI entry point
(``wsgi``), gunicorn's settings and its access log."""
