"""Fixtures of the fake backend's self-tests (tests/fake_backend/test_*.py);
the helpers they import are in fakeutil.py.

Run: /usr/bin/python3 -m pytest -q tests/fake_backend
"""

import pytest

from fakeutil import Fake


@pytest.fixture(scope="module")
def server():
    """One fake backend per test file (--token-delay-ms 1)."""
    srv = Fake("--token-delay-ms", "1")
    yield srv
    assert srv.stop() == 0
    log = srv.stderr()
    assert "Traceback" not in log, log


@pytest.fixture
def fake(server):
    """The test file's fake backend, with no queued scripts and no records."""
    status, _ = server.control("POST", "/_fake/reset")
    assert status == 200
    return server
