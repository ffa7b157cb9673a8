"""tail.Pacer: an idle follower's round starts at once; rounds asked for within the window
wait out its rest, so the commits of the window land in one round."""

from __future__ import annotations

import threading
import time

from tuoyu_shared.tail import Pacer


def test_the_first_round_starts_at_once_and_the_next_waits_out_the_window():
    pacer = Pacer(0.2)
    started = time.monotonic()
    pacer.wait()
    assert time.monotonic() - started < 0.05, "an idle follower answers at once"
    assert 0.1 < pacer.due_in() <= 0.2
    pacer.wait()
    assert 0.18 <= time.monotonic() - started < 0.4, "the second round waited for the window"


def test_a_round_after_the_window_waits_for_nothing():
    pacer = Pacer(0.05)
    pacer.wait()
    time.sleep(0.08)
    assert pacer.due_in() == 0
    started = time.monotonic()
    pacer.wait()
    assert time.monotonic() - started < 0.02


def test_stopping_ends_the_wait_and_a_zero_window_paces_nothing():
    pacer = Pacer(30)
    pacer.started()
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()
    pacer.wait(stop)
    assert time.monotonic() - started < 5, "the stop event ends the wait"
    unpaced = Pacer(0)
    unpaced.wait()
    assert unpaced.due_in() == 0
