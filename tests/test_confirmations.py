"""The confirmation queue: a batch's confirmations run in order beside the next batch, at most
one batch outstanding, errors surface, and a stopping campaign writes nothing half-done."""

from __future__ import annotations

import threading

import pytest

from discover.confirmations import ConfirmationQueue, ConfirmationStopped

WAIT = 10.0  # seconds: generous, only reached if the behaviour under test is broken


def blocking(log: list, name: str, release: threading.Event, started: threading.Event | None = None):
    def confirm() -> None:
        if started is not None:
            started.set()
        assert release.wait(WAIT)
        log.append(name)
    return confirm


def test_a_batch_is_queued_without_waiting_for_its_own_confirmations():
    queue = ConfirmationQueue()
    release, log = threading.Event(), []
    try:
        queue.next_batch([blocking(log, "a", release)])  # returns while "a" is still blocked
        assert log == []
        release.set()
        queue.drain()
        assert log == ["a"]
    finally:
        release.set()
        queue.close()


def test_the_next_batch_waits_for_the_previous_batchs_confirmations_which_run_in_order():
    queue = ConfirmationQueue()
    release, log = threading.Event(), []
    try:
        queue.next_batch([blocking(log, "a", release), blocking(log, "b", release)])
        second = threading.Thread(target=queue.next_batch, args=([lambda: log.append("c")],))
        second.start()
        second.join(0.3)
        assert second.is_alive(), "a batch's confirmations must wait for the batch before it"
        release.set()
        second.join(WAIT)
        assert not second.is_alive()
        queue.drain()
        assert log == ["a", "b", "c"]
    finally:
        release.set()
        queue.close()


def test_an_error_in_a_confirmation_is_raised_by_the_next_batch_or_drain():
    queue = ConfirmationQueue()

    def broken() -> None:
        raise ValueError("a bug in a confirmation")
    try:
        queue.next_batch([broken])
        with pytest.raises(ValueError, match="a bug in a confirmation"):
            queue.next_batch([])
        queue.next_batch([broken])
        with pytest.raises(ValueError, match="a bug in a confirmation"):
            queue.drain()
    finally:
        queue.close()


def test_stopping_drops_the_queued_confirmations_and_the_running_one_at_its_check():
    queue = ConfirmationQueue()
    release, started, log = threading.Event(), threading.Event(), []
    outcome = []

    def running() -> None:
        started.set()
        assert release.wait(WAIT)  # its evaluation, returning after the stop
        try:
            queue.check()
        except ConfirmationStopped:
            outcome.append("dropped")
            raise
        outcome.append("written")

    queue.next_batch([running, lambda: log.append("queued")])
    assert started.wait(WAIT)
    queue.stop()
    release.set()
    queue.close()
    assert outcome == ["dropped"] and log == []


def test_check_passes_while_the_campaign_runs():
    queue = ConfirmationQueue()
    try:
        queue.check()
    finally:
        queue.close()
