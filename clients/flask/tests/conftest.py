"""Fixtures: the test app of :mod:`authsvc_testapp`."""

from __future__ import annotations

import pytest
from authsvc_testapp import make_app


@pytest.fixture
def app():
    return make_app()[0]


@pytest.fixture
def client(app):
    return app.test_client()
