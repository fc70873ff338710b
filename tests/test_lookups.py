"""Background Slack lookups (`feedbot.slack.directory`): a lookup that is already finished
when its caller looks must not hang that caller; a user group's members are answered from
what is known while Slack is asked again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from slack_sdk import WebClient

from feedbot.slack.directory import FIRST_RETRY_AFTER, GroupDirectory, _Lookups
from tests.fakeslack import FakeSlack
from tests.harness import TOKEN


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


# -- a Slack user group's members (`GroupDirectory`) --------------------------------------------


def group_directory(fake: FakeSlack, *, ttl: float) -> GroupDirectory:
    # No retries of its own: what the directory does when Slack fails is what is tested.
    return GroupDirectory(
        WebClient(token=TOKEN, base_url=fake.base_url, retry_handlers=[]), ttl=ttl
    )


def test_a_user_groups_stale_members_are_answered_while_one_call_reads_them_again() -> None:
    """Every thread reading the configuration asks for the leaders' group: once known, its
    members are answered at once, and a stale list is read again by one call in the
    background, not by each thread waiting for a slow Slack."""
    with FakeSlack(token=TOKEN) as fake:
        fake.add_usergroup("SLEADS001", ["U1"])
        groups = group_directory(fake, ttl=1.0)
        assert groups.members("SLEADS001") == {"U1"}  # the first lookup waits for Slack
        fake.add_usergroup("SLEADS001", ["U1", "U2"])
        fake.fail("usergroups.users.list", status=200, error="", delay=2.0)  # slow, then fine
        time.sleep(1.2)  # past its time, not twice

        answers: list[tuple[frozenset[str], float]] = []

        def ask() -> None:
            began = time.monotonic()
            members = groups.members("SLEADS001")
            answers.append((members, time.monotonic() - began))

        askers = [threading.Thread(target=ask) for _ in range(8)]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join(5)
        assert [members for members, _ in answers] == [frozenset({"U1"})] * 8
        assert max(took for _, took in answers) < 1.0, "nobody waited for Slack"
        groups.wait()
        assert groups.members("SLEADS001") == {"U1", "U2"}
        assert len(fake.calls_to("usergroups.users.list")) == 2, "one call per read"


def test_a_user_group_slack_fails_keeps_its_members_and_is_not_asked_again_at_once() -> None:
    with FakeSlack(token=TOKEN) as fake:
        fake.add_usergroup("SLEADS001", ["U1"])
        groups = group_directory(fake, ttl=1.0)
        assert groups.members("SLEADS001") == {"U1"}
        fake.fail("usergroups.users.list", status=500)
        time.sleep(1.2)
        assert groups.members("SLEADS001") == {"U1"}
        groups.wait()
        for _ in range(5):
            assert groups.members("SLEADS001") == {"U1"}, "the last known members hold"
        assert len(fake.calls_to("usergroups.users.list")) == 2, "asked again only later"


def test_a_user_group_never_read_is_asked_again_soon_unless_slack_asks_to_wait() -> None:
    with FakeSlack(token=TOKEN) as fake:
        fake.add_usergroup("SLEADS001", ["U1"])
        groups = group_directory(fake, ttl=300)
        fake.fail("usergroups.users.list", status=500)
        assert groups.members("SLEADS001") == frozenset()
        assert groups.members("SLEADS001") == frozenset(), "not every read waits for Slack"
        assert len(fake.calls_to("usergroups.users.list")) == 1
        groups._retry_at["SLEADS001"] -= FIRST_RETRY_AFTER  # a few seconds later
        assert groups.members("SLEADS001") == {"U1"}
        assert len(fake.calls_to("usergroups.users.list")) == 2

        fake.add_usergroup("SEAST0001", ["U2"])
        fake.fail("usergroups.users.list", status=429, error="ratelimited", retry_after=30)
        assert groups.members("SEAST0001") == frozenset()
        assert groups.members("SEAST0001") == frozenset(), "Slack said to wait 30 s"
        assert len(fake.calls_to("usergroups.users.list")) == 3


def test_a_user_groups_members_not_read_for_a_long_while_are_waited_for() -> None:
    """After a quiet while, someone removed from the leaders' group meanwhile must not act as
    a leader on what was known then: the members are read before they are answered."""
    with FakeSlack(token=TOKEN) as fake:
        fake.add_usergroup("SLEADS001", ["U1", "U2"])
        groups = group_directory(fake, ttl=0.2)
        assert groups.members("SLEADS001") == {"U1", "U2"}
        fake.add_usergroup("SLEADS001", ["U1"])
        time.sleep(0.5)  # over twice its time
        assert groups.members("SLEADS001") == {"U1"}
