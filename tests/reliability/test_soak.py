"""The long version (``make soak``): every scenario of the suite again and again, at a higher
rate, for ``TUOYU_SOAK_MINUTES`` (30) minutes; each round must count 0 lost, 0 duplicated and
0 mismatches, and afterwards no process may have grown past the bounds (resident size, open
files) nor any service's database have held too many connections. The report goes to
``bench-results/reliability/soak.{json,md}``. ``make test`` runs the bounded version
(test_faults.py) instead."""

from __future__ import annotations

import time

import pytest

from tuoyu_shared.reliability.scenarios import SCENARIOS, profile

#: Within one process's life, from its third sample (after warming up) to its last.
RSS_GROWTH_MIB = 150.0
FD_GROWTH = 64
#: A service's database: its service process, its worker and the suite's readers.
CONNECTIONS_MAX = 80


@pytest.mark.broker_control
@pytest.mark.skipif(profile().name != "soak",
                    reason="the soak runs with `make soak` (TUOYU_RELIABILITY_PROFILE=soak)")
def test_every_fault_again_and_again_for_half_an_hour(suite):
    deadline = time.monotonic() + suite.profile.soak_minutes * 60
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        for name, fault_text, fault in SCENARIOS:
            result = suite.run(f"{name} #{rounds}", fault_text, fault)
            assert result.clean, "\n".join(result.problems)
            if time.monotonic() >= deadline:
                break
    suite.bounds = dict(rss_growth_mib=RSS_GROWTH_MIB, fd_growth=FD_GROWTH,
                        connections_max=CONNECTIONS_MAX)
    resources = suite.close()
    assert resources["minutes"] >= suite.profile.soak_minutes
    assert not resources["violations"], "\n".join(resources["violations"])
