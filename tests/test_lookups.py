"""Background Slack lookups (`feedbot.slack.directory`): a lookup that is already finished
when its caller looks must not hang that caller."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from feedbot.slack.directory import _Lookups


def test_a_lookup_finished_before_its_callback_is_added_returns_at_once() -> None:
    lookups = _Lookups("test")

    def finished_at_once(lookup: Callable[[], object]) -> Future[object]:
        future: Future[object] = Future()
        future.set_result(lookup())
        return future

    lookups._pool.submit = finished_at_once  # type: ignore[method-assign]
    answers: list[object] = []
    caller = threading.Thread(target=lambda: answers.append(lookups.run("k", lambda: 42, None)))
    caller.start()
    caller.join(5)
    assert not caller.is_alive(), "the caller waited for itself"
    assert answers == [42]
    assert lookups._running == {}, "nothing is left marked as running"
