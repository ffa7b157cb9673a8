"""Scheduled jobs run once per service, however many workers run them."""

from __future__ import annotations

import threading
import time

import pytest

from tuoyu_shared.timers import Timer


def test_two_workers_timers_run_a_job_once_at_a_time(fresh_database):
    url = fresh_database("timers")
    running, ran = threading.Event(), []

    def job():
        running.set()
        time.sleep(0.5)
        ran.append(threading.current_thread().name)
        return {"failed": []}

    first = Timer("daily", "svc", url, job, interval=3600)
    second = Timer("daily", "svc", url, job, interval=3600)
    thread = threading.Thread(target=first.run_once, name="first")
    thread.start()
    assert running.wait(5)
    assert second.run_once() is None  # the other worker holds it: skipped, not run twice
    thread.join(5)
    assert ran == ["first"] and (first.runs, second.runs, second.skipped) == (1, 0, 1)
    assert second.run_once() == {"failed": []}  # free again once the first is done
    other = Timer("hourly", "svc", url, job, interval=3600)
    assert other.run_once() is not None  # another timer has its own lock


def test_a_failed_run_is_tried_again_after_its_retry(fresh_database):
    url = fresh_database("timers")
    results = iter([{"failed": ["x"]}, {"failed": []}])
    timer = Timer("daily", "svc", url, lambda: next(results), interval=3600, retry=0.1,
                  failed=lambda result: bool(result["failed"]))
    stop = threading.Event()
    thread = threading.Thread(target=timer.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while timer.runs < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(5)
    assert timer.runs == 2  # the retry came after 0.1 s, not after the hour


def test_an_interval_or_retry_must_be_positive(fresh_database):
    with pytest.raises(ValueError):
        Timer("t", "svc", "postgresql://unused", lambda: None, interval=0)
