"""`AnonymousLoginLimit`'s windows: the in-process ones by default, or the ones given
(a cluster node gives its shared windows: `cluster/auth_state.py`)."""

from __future__ import annotations

from chatgate.auth.anonymous import AnonymousLoginLimit
from chatgate.auth.throttle import RegistrationThrottle, ThrottleOptions
from chatgate.config import AnonymousLimits

LIMITS = AnonymousLimits(per_address=2, total=10, period=10.0)


def test_given_windows_are_the_ones_counted() -> None:
    """Two limits over the same windows count together, with the host's numbers
    (`options`), as two nodes over the cluster's windows do."""
    first = AnonymousLoginLimit(LIMITS, ThrottleOptions())
    shared = RegistrationThrottle(first.options)
    a = AnonymousLoginLimit(LIMITS, ThrottleOptions(), windows=shared)
    b = AnonymousLoginLimit(LIMITS, ThrottleOptions(), windows=shared)
    assert a.windows is shared and b.windows is shared
    assert a.admit("192.0.2.1", 0.0)
    assert b.admit("192.0.2.1", 1.0)
    assert not a.admit("192.0.2.1", 2.0)  # the third from the address, on either
    assert not b.admit("192.0.2.1", 2.0)
    assert a.prune(100.0) >= 1  # the windows' entries, pruned through either limit


def test_the_default_windows_are_per_limit_with_the_host_numbers() -> None:
    a = AnonymousLoginLimit(LIMITS, ThrottleOptions())
    b = AnonymousLoginLimit(LIMITS, ThrottleOptions())
    assert isinstance(a.windows, RegistrationThrottle) and a.windows is not b.windows
    registration = a.options.registration
    assert (registration.per_address, registration.address_period) == (2, 10.0)
    assert (registration.total, registration.total_period) == (10, 10.0)
