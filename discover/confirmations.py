"""A campaign's confirmations, in proposal order on their own thread, beside the next batch.

A would-be best (on the search tier) is confirmed on the validation tier, then maybe checked at
a longer horizon, each against the confirmations before it, so they run strictly in proposal
order. Nothing a later batch's proposals read depends on a confirmation: parents, the prompt's
top programs and the feedback come from search-tier scores (the validation tier never picks a
parent). So batch k's confirmations can run while batch k+1 is evaluated, filling the worker
slots a confirmation alone leaves idle, and a seeded campaign archives exactly what it archives
when they run in between batches.

The seed programs' confirmations (and, on resume, those a kill left undone) are the first
"batch": they run beside the first batch of proposals. At most one batch's confirmations are
outstanding: before a batch queues its own, the previous
batch's must have finished (they had the whole batch's evaluation to run beside), so a campaign
ends at most one batch's confirmations after its budget says stop, as before.

Stopping (Ctrl-C, an error): queued confirmations are cancelled and the running one is
discarded when its evaluation returns (:meth:`ConfirmationQueue.check`), so an interrupted
confirmation leaves nothing half-written; ``--resume`` runs it again (its runs are cached).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable


class ConfirmationStopped(Exception):
    """The campaign is stopping: the confirmation that was running is dropped, unwritten."""


class ConfirmationQueue:
    """One batch's confirmations at a time, run in order on one thread."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="confirm")
        self._outstanding: list[Future] = []
        self._stopping = threading.Event()

    def next_batch(self, confirmations: list[Callable[[], None]]) -> None:
        """Wait for the previous batch's confirmations (re-raising any error of theirs), then
        queue this batch's, in the order given."""
        self.drain()
        self._outstanding = [self._pool.submit(_unless_stopped, confirm) for confirm in confirmations]

    def drain(self) -> None:
        """Wait until every queued confirmation has run; an error in one is raised here."""
        outstanding, self._outstanding = self._outstanding, []
        for future in outstanding:
            future.result()

    def check(self) -> None:
        """Called by a confirmation after each evaluation it waits for, before it writes."""
        if self._stopping.is_set():
            raise ConfirmationStopped()

    def stop(self) -> None:
        """Cancel the queued confirmations; the running one ends at its next :meth:`check`."""
        self._stopping.set()
        self._outstanding = []
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop and wait for the confirmation thread (after the executor is closed, so a
        running evaluation ends)."""
        self.stop()
        self._pool.shutdown(wait=True)


def _unless_stopped(confirm: Callable[[], None]) -> None:
    try:
        confirm()
    except ConfirmationStopped:
        pass  # the campaign is stopping; --resume confirms it again
