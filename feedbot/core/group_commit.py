"""Group commit: the writes of many threads that arrive together go in one transaction.

Storing a request in the inbox is one small insert, but its transaction costs more than the
insert: a connection from the pool, `BEGIN`, `COMMIT`, on SQLite a turn at the file's write
lock (in the arrivals file, `feedbot.db.arrivals_engine`, among the requests themselves), on
PostgreSQL a round trip at least. When requests come in faster than that, they queue here in
memory, and whoever writes next takes everything that waits, up to `max_batch`, into one
transaction. A lone request is written at once by its own thread, as before: nothing waits
for a batch to fill, and no thread is added.

The thread that writes is one of the callers (the first to arrive while no write is under
way; after each write, the first still waiting), so a caller returns only once its own item
is committed or has failed with the rest of its batch.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

MAX_BATCH = 64
"""Most items in one transaction: a batch waits for the one before it, so a bound keeps the
wait of the last in line to a few milliseconds."""


@dataclass(eq=False)
class _Waiting(Generic[Item, Outcome]):
    item: Item
    ready: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    """This caller writes the next batch (itself first in it)."""
    outcome: Outcome | None = None
    error: BaseException | None = None


class GroupCommit(Generic[Item, Outcome]):
    """Calls `write` with the items of the callers waiting together; `write` returns one
    outcome per item, in their order, and commits them together or raises for all.

    When a batch of several fails with an error `alone` accepts (one that may lie in a single
    item, not in the database being away), each of its items is written again on its own, so
    one bad item fails only its own caller."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Sequence[Outcome]],
        *,
        max_batch: int = MAX_BATCH,
        alone: Callable[[BaseException], bool] = lambda error: False,
    ) -> None:
        if max_batch < 1:
            raise ValueError("a batch holds at least one item")
        self._write = write
        self._alone = alone
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiting[Item, Outcome]] = []
        self._writing = False

    @property
    def writing(self) -> bool:
        """A batch is being written."""
        return self._writing

    @property
    def waiting(self) -> int:
        """Callers queued behind the batch being written."""
        with self._lock:
            return len(self._queue)

    def submit(self, item: Item) -> Outcome:
        """The outcome of writing `item`, once committed; raises what its batch raised."""
        me: _Waiting[Item, Outcome] = _Waiting(item)
        with self._lock:
            self._queue.append(me)
            if not self._writing:
                self._writing = me.leads = True
        if not me.leads:
            me.ready.wait()
        if me.leads:
            self._write_batch()
        if me.error is None:
            return me.outcome  # type: ignore[return-value]
        own = None if me.leads else _own_copy(me.error)
        if own is None:
            raise me.error
        raise own from me.error

    def _write_batch(self) -> None:
        with self._lock:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
        try:
            self._write_together(batch)
        except Exception as exc:
            if len(batch) > 1 and self._alone(exc):
                self._write_one_by_one(batch)
        finally:
            with self._lock:
                following = self._queue[0] if self._queue else None
                if following is None:
                    self._writing = False
                else:
                    following.leads = True
            for waiting in batch:
                waiting.ready.set()
            if following is not None:
                following.ready.set()

    def _write_one_by_one(self, batch: list[_Waiting[Item, Outcome]]) -> None:
        """Each item on its own, until the database itself fails (then the rest with it:
        trying each again would only keep their callers waiting longer)."""
        for index, waiting in enumerate(batch):
            try:
                self._write_together([waiting])
            except Exception as exc:
                if not self._alone(exc):
                    for rest in batch[index + 1 :]:
                        rest.outcome, rest.error = None, exc
                    return

    def _write_together(self, batch: list[_Waiting[Item, Outcome]]) -> None:
        """Write `batch` and give each its outcome, or each the error (which is raised)."""
        try:
            outcomes = self._write([waiting.item for waiting in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(batch)} items")
        except BaseException as exc:
            for waiting in batch:
                waiting.outcome, waiting.error = None, exc
            raise
        for waiting, outcome in zip(batch, outcomes, strict=True):
            waiting.outcome, waiting.error = outcome, None


def _own_copy(error: BaseException) -> BaseException | None:
    """The batch's error for one more caller (raising one exception object in several
    threads at once would mix their tracebacks); None if it cannot be copied."""
    try:
        return copy.copy(error)
    except Exception:
        return None
