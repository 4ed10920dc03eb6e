"""Group commit: webhooks that arrive while the inbox is writing share its next transaction.

Each event is answered only once the transaction that holds it is committed (durably, on
either back end), exactly as when every event had a transaction of its own; but a burst of N
events costs a few writes to disk instead of N. One thread writes, so the intake never contends
with itself for the inbox's write lock (SQLite's, or the queue's lock on PostgreSQL, which
intakes on other hosts share). A shared transaction that fails for a reason other than the
storage is tried again event by event, so that one event's fault is that event's alone.
"""

import asyncio
import threading
from dataclasses import dataclass

from salesops_pipeline.post_call.inbox import Accepted, Inbox

# Events per transaction at most: a larger burst is split over several commits.
MAX_BATCH = 500


@dataclass
class _Waiting:
    call_id: str
    payload: str
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
    if future.done():  # the client went away; the event is stored all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class GroupCommitter:
    def __init__(self, inbox: Inbox, max_batch: int = MAX_BATCH):
        self.inbox = inbox
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._ready = threading.Condition()
        self._writer: threading.Thread | None = None

    async def accept(self, call_id: str, payload: str) -> Accepted:
        """Store the event; returns once it is committed, raises what the commit raised."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(call_id, payload, loop.create_future(), loop)
        with self._ready:
            self._waiting.append(waiting)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_forever, name="intake-writer", daemon=True
                )
                self._writer.start()
            self._ready.notify()
        return await waiting.future

    def _write_forever(self) -> None:
        while True:
            with self._ready:
                while not self._waiting:
                    self._ready.wait()
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
            try:
                results = self.inbox.accept_many([(w.call_id, w.payload) for w in batch])
            except self.inbox.errors() as error:
                # The storage itself refused: every event of the batch would fail alike.
                self._fail(batch, error)
                continue
            except Exception as error:  # noqa: BLE001 - answered, never lost
                if len(batch) == 1:
                    self._fail(batch, error)
                    continue
                # Not the storage: something one event triggers. Each event alone then, so
                # that it fails alone rather than with every delivery beside it.
                results = [self._accept_alone(w) for w in batch]
            except BaseException as error:  # noqa: BLE001 - the writer must outlive it
                self._fail(batch, error)
                continue
            for w, result in zip(batch, results, strict=True):
                if result is not None:
                    w.loop.call_soon_threadsafe(_settle, w.future, result)

    def _accept_alone(self, waiting: _Waiting) -> Accepted | None:
        """Store one event in its own transaction; None once its request has its error."""
        try:
            [accepted] = self.inbox.accept_many([(waiting.call_id, waiting.payload)])
        except Exception as error:  # noqa: BLE001 - its own request gets it
            self._fail([waiting], error)
            return None
        return accepted

    @staticmethod
    def _fail(batch: list[_Waiting], error: BaseException) -> None:
        for w in batch:
            w.loop.call_soon_threadsafe(_settle, w.future, None, error)
