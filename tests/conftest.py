"""What the whole suite shares: how pytest-xdist may spread it over processes.

`make test` runs the suite on two processes (`-n 2 --dist loadgroup`).  Tests
that must share one process are put in one group here: the browser tests share
one Chromium and one event loop per process (tests/browser/conftest.py), and
slixmpp's itests run both servers and eight clients at once (a second copy
beside them would only make both slower).  Every other test is independent:
its servers bind free loopback ports and its files are under its own tmp_path.
"""

from __future__ import annotations

import pytest

#: test folders whose tests run in one xdist worker, by group name
SERIAL_GROUPS = {"browser": "tests/browser/", "interop": "tests/interop/test_slixmpp_itests.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid
        for group, prefix in SERIAL_GROUPS.items():
            if path.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))
