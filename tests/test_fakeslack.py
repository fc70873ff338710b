"""Tests of the fake Slack server, driven through a real slack_sdk WebClient.

The bot's end-to-end tests trust this fake to behave like Slack, so its answers, state,
fault injection and Block Kit checks are pinned down here with the same client the bot uses.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakeslack import ALL_SCOPES, FakeSlack

TOKEN = "xoxb-test-token"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(serves_feedbot=False, scopes=ALL_SCOPES) as server:
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=TOKEN, base_url=fake.base_url, timeout=5)


def without_block_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Blocks as sent, before Slack gave each one without a block id an id of its own."""
    return [{k: v for k, v in block.items() if k != "block_id"} for block in blocks]


def slack_error(excinfo: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(excinfo.value.response["error"])


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def modal(*blocks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Feedback"},
        "blocks": list(blocks),
        **extra,
    }


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


# ------------------------------------------------------------------ basics


def test_auth_test_and_bad_token(fake: FakeSlack, client: WebClient) -> None:
    response = client.auth_test()
    assert response["user_id"] == "UBOT"
    assert response["bot_id"] == "B0BOT"
    assert response["team_id"] == "T0TEAM"
    assert response["user"] == "feedbot"
    assert response["is_enterprise_install"] is False

    with pytest.raises(SlackApiError) as excinfo:
        WebClient(token="xoxb-wrong", base_url=fake.base_url).auth_test()
    assert slack_error(excinfo) == "invalid_auth"
    assert excinfo.value.response.status_code == 200
    assert [c.status for c in fake.calls_to("auth.test")] == [200, 200]


def test_unknown_method(fake: FakeSlack, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("nope.nothing")
    assert slack_error(excinfo) == "unknown_method"
    assert fake.calls[-1].method == "nope.nothing"


def test_get_with_query_string(fake: FakeSlack) -> None:
    fake.add_user("U1", real_name="Ada Lovelace")
    url = f"{fake.base_url}users.info?user=U1&include_locale=true"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.loads(response.read())
    assert body["ok"] is True
    assert body["user"]["real_name"] == "Ada Lovelace"
    assert body["user"]["locale"] == "en-US"


# ------------------------------------------------------------------ messages


def test_post_update_delete_history_and_replies(fake: FakeSlack, client: WebClient) -> None:
    metadata = {"event_type": "feedbot_outbox", "event_payload": {"outbox_id": 7}}
    first = client.chat_postMessage(channel="C1", text="first", metadata=metadata)
    second = client.chat_postMessage(channel="C1", text="second")
    assert first["channel"] == "C1"
    assert first["message"]["metadata"] == metadata
    assert float(first["ts"]) < float(second["ts"])

    reply = client.chat_postMessage(channel="C1", text="in thread", thread_ts=first["ts"])
    client.chat_update(channel="C1", ts=second["ts"], text="second, edited")

    history = client.conversations_history(channel="C1")
    assert [m["text"] for m in history["messages"]] == ["second, edited", "first"]
    assert all("metadata" not in m for m in history["messages"])
    assert history["messages"][1]["reply_count"] == 1
    assert history["has_more"] is False

    with_metadata = client.conversations_history(channel="C1", include_all_metadata=True)
    assert with_metadata["messages"][1]["metadata"] == metadata

    only_newer = client.conversations_history(channel="C1", oldest=first["ts"])
    assert [m["ts"] for m in only_newer["messages"]] == [second["ts"]]
    inclusive = client.conversations_history(channel="C1", oldest=first["ts"], inclusive=True)
    assert len(inclusive["messages"]) == 2

    replies = client.conversations_replies(channel="C1", ts=first["ts"], include_all_metadata=True)
    assert [m["ts"] for m in replies["messages"]] == [first["ts"], reply["ts"]]
    assert replies["messages"][0]["metadata"]["event_payload"] == {"outbox_id": 7}

    client.chat_delete(channel="C1", ts=second["ts"])
    stored = fake.messages("C1")
    assert [m["text"] for m in stored] == ["first", "in thread"]
    assert stored[1]["thread_ts"] == first["ts"]
    assert stored[0]["metadata"] == metadata
    assert stored[0]["bot_id"] == "B0BOT" and stored[0]["user"] == "UBOT"
    fake.assert_no_violations()


def test_ts_values_are_unique_and_near_now(client: WebClient) -> None:
    ts = [client.chat_postMessage(channel="C1", text=str(i))["ts"] for i in range(20)]
    assert ts == sorted(ts, key=float)
    assert len(set(ts)) == 20
    assert abs(float(ts[0]) - time.time()) < 60  # the bot filters history by its own clock


def test_concurrent_posts_are_all_recorded(fake: FakeSlack, client: WebClient) -> None:
    def post_ten(worker: int) -> None:
        for i in range(10):
            client.chat_postMessage(channel="C1", text=f"{worker}-{i}")

    threads = [threading.Thread(target=post_ten, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = fake.messages("C1")
    assert len(stored) == len(fake.calls) == 80
    assert len({m["ts"] for m in stored}) == 80
    assert [m["ts"] for m in stored] == sorted((m["ts"] for m in stored), key=float)


def test_ts_follows_an_injected_clock() -> None:
    now = [1_700_000_000.0]
    with FakeSlack(clock=lambda: now[0], serves_feedbot=False, scopes=ALL_SCOPES) as fake:
        client = WebClient(token=TOKEN, base_url=fake.base_url)
        first = client.chat_postMessage(channel="C1", text="a")["ts"]
        second = client.chat_postMessage(channel="C1", text="b")["ts"]
        now[0] += 3600
        later = client.chat_postMessage(channel="C1", text="c")["ts"]
        assert (first, second, later) == (
            "1700000000.000000",
            "1700000000.000001",
            "1700003600.000000",
        )
        newer = client.conversations_history(channel="C1", oldest="1700000001")["messages"]
        assert [m["text"] for m in newer] == ["c"]


def test_message_errors(fake: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C1", text="hi")
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "chat.postMessage",
            {"channel": "C1", "text": "x", "thread_ts": "1.000001"},
            "thread_not_found",
        ),
        ("chat.update", {"channel": "C1", "ts": "1.000001", "text": "x"}, "message_not_found"),
        ("chat.delete", {"channel": "C1", "ts": "1.000001"}, "message_not_found"),
        ("chat.postMessage", {"channel": "not a channel", "text": "x"}, "channel_not_found"),
    ]
    for method, args, error in cases:
        with pytest.raises(SlackApiError) as excinfo:
            client.api_call(method, json=args)
        assert slack_error(excinfo) == error, method
    reply = client.chat_postMessage(channel="C1", text="r", thread_ts=posted["ts"])
    with pytest.raises(SlackApiError) as excinfo:  # replies cannot be thread parents
        client.chat_postMessage(channel="C1", text="x", thread_ts=reply["ts"])
    assert slack_error(excinfo) == "thread_not_found"
    assert [m["text"] for m in fake.messages("C1")] == ["hi", "r"]


def test_dm_via_user_id_matches_conversations_open(fake: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="U123", text="hello")
    opened = client.conversations_open(users="U123")
    assert posted["channel"] == opened["channel"]["id"] == fake.dm_channel("U123") == "D123"
    client.chat_postMessage(channel=opened["channel"]["id"], text="again")
    assert [m["text"] for m in fake.dm_messages("U123")] == ["hello", "again"]
    info = client.conversations_info(channel="D123")
    assert info["channel"]["is_im"] is True


def test_channel_not_found_and_not_in_channel(fake: FakeSlack, client: WebClient) -> None:
    fake.add_channel("C1", name="general")
    fake.add_channel("C2", name="secret", is_private=True, bot_is_member=False)
    client.chat_postMessage(channel="C1", text="before")
    fake.remove_channel("C1")
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C1", text="after")
    assert slack_error(excinfo) == "channel_not_found"
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C2", text="hi")
    assert slack_error(excinfo) == "not_in_channel"
    info = client.conversations_info(channel="C2")["channel"]
    assert info["is_member"] is False and info["is_private"] is True and info["name"] == "secret"
    assert fake.messages("C2") == []


def test_ephemeral_permalink_users_usergroups(fake: FakeSlack, client: WebClient) -> None:
    fake.add_user("U1", name="ada", real_name="Ada L", locale="de-DE", tz="Europe/Berlin")
    fake.add_usergroup("S1", ["U1", "U2"], handle="leads")
    fake.add_channel("C1", members=["U1"])
    eph = client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert fake.ephemerals == [
        {
            "channel": "C1",
            "user": "U1",
            "text": "only you",
            "blocks": [],
            "message_ts": eph["message_ts"],
        }
    ]
    link = client.chat_getPermalink(channel="C1", message_ts="1700000000.000100")
    assert link["permalink"] == "https://frontline.slack.com/archives/C1/p1700000000000100"

    user = client.users_info(user="U1", include_locale=True)["user"]
    assert user["profile"]["display_name"] == "ada"
    assert user["locale"] == "de-DE"
    assert user["tz_offset"] in (3600, 7200)
    assert "locale" not in client.users_info(user="U1")["user"]
    with pytest.raises(SlackApiError) as excinfo:
        client.users_info(user="U404")
    assert slack_error(excinfo) == "user_not_found"

    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError) as excinfo:
        client.usergroups_users_list(usergroup="S404")
    assert slack_error(excinfo) == "no_such_subteam"
    assert client.conversations_members(channel="C1")["members"] == ["U1", "UBOT"]


def test_form_bodies_threads_and_seeded_messages(fake: FakeSlack, client: WebClient) -> None:
    blocks = [section("form encoded")]
    metadata = {"event_type": "e", "event_payload": {"n": 1}}
    params = {"channel": "C1", "text": "t", "blocks": json.dumps(blocks)}
    posted = client.api_call(
        "chat.postMessage", params={**params, "metadata": json.dumps(metadata)}
    )
    call = fake.calls_to("chat.postMessage")[0]
    assert call.args["blocks"] == blocks and call.args["metadata"] == metadata
    assert without_block_ids(fake.messages("C1")[0]["blocks"]) == blocks

    client.chat_postMessage(channel="C1", text="echo", thread_ts=posted["ts"], reply_broadcast=True)
    history = client.conversations_history(channel="C1")["messages"]
    assert [m["text"] for m in history] == ["echo", "t"]
    assert history[0]["subtype"] == "thread_broadcast"

    human_ts = fake.add_message("C1", "a human wrote this", user="U1")
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel="C1", ts=human_ts, text="hijacked")
    assert slack_error(excinfo) == "cant_update_message"
    reply = client.chat_postMessage(channel="C1", text="answer", thread_ts=human_ts)
    thread = client.conversations_replies(channel="C1", ts=reply["ts"])["messages"]
    assert [m["text"] for m in thread] == ["a human wrote this", "answer"]

    group = client.conversations_open(users=["U1", "U2"])["channel"]["id"]
    assert (
        group.startswith("G") and client.conversations_open(users="U2,U1")["channel"]["id"] == group
    )
    im = client.conversations_open(users="U7", return_im=True)["channel"]
    assert im == {"id": "D7", "is_im": True, "user": "U7", "is_open": True}
    fake.add_user("U8", deleted=True)
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_open(users="U8")
    assert slack_error(excinfo) == "user_disabled"
    fake.assert_no_violations()


def test_multipart_upload_body(fake: FakeSlack, client: WebClient) -> None:
    upload = client.files_getUploadURLExternal(filename="a.txt", length=5)
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        upload["upload_url"],
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.read() == b"OK - 5"
    files = [{"id": upload["file_id"], "title": "A"}]
    client.files_completeUploadExternal(files=files)  # no channel: uploaded but not shared
    assert fake.files[0]["content"] == b"hello" and fake.files[0]["channel_id"] is None
    fake.assert_no_violations()


# ------------------------------------------------------------------ views


def test_a_trigger_expires_after_three_seconds_used_or_not(
    fake: FakeSlack, client: WebClient
) -> None:
    fresh, stale = fake.new_trigger_id(), fake.new_trigger_id()
    fake.trigger_lifetime = 1.0
    assert client.views_open(trigger_id=fresh, view=modal(section("in time")))["ok"]
    time.sleep(1.1)
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id=stale, view=modal(section("too late")))
    assert slack_error(excinfo) == "expired_trigger_id"


def test_views_open_trigger_reuse_update_and_publish(fake: FakeSlack, client: WebClient) -> None:
    opened = client.views_open(trigger_id="t1", view=modal(section("hi"), callback_id="give"))
    view = opened["view"]
    assert view["id"].startswith("V") and view["hash"] and view["state"] == {"values": {}}
    assert fake.views[view["id"]]["callback_id"] == "give"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id="t1", view=modal(section("again")))
    assert slack_error(excinfo) == "expired_trigger_id"
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("views.open", json={"view": modal(section("x"))})
    assert slack_error(excinfo) == "invalid_arguments"

    updated = client.views_update(view_id=view["id"], view=modal(section("new")), hash=view["hash"])
    assert updated["view"]["id"] == view["id"]
    assert fake.views[view["id"]]["blocks"][0]["text"]["text"] == "new"
    with pytest.raises(SlackApiError) as excinfo:
        client.views_update(view_id="V404", view=modal(section("x")))
    assert slack_error(excinfo) == "not_found"

    with pytest.raises(SlackApiError) as excinfo:
        client.views_update(view_id=view["id"], view=modal(section("x")), hash="stale")
    assert slack_error(excinfo) == "hash_conflict"
    pushed = client.views_push(trigger_id="t2", view=modal(section("on top")))
    assert pushed["view"]["id"] in fake.views and len(fake.views) == 2

    home = {"type": "home", "blocks": [section("welcome")]}
    published = client.views_publish(user_id="U1", view=home)
    assert fake.home_views["U1"]["id"] == published["view"]["id"]
    assert fake.home_views["U1"]["blocks"][0]["text"]["text"] == "welcome"


# ------------------------------------------------------------------ faults and rate limits


def test_fault_500_once_then_success(fake: FakeSlack, client: WebClient) -> None:
    fake.fail("chat.postMessage")
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C1", text="lost")
    assert excinfo.value.response.status_code == 500
    assert slack_error(excinfo) == "internal_error"
    client.chat_postMessage(channel="C1", text="delivered")
    assert [m["text"] for m in fake.messages("C1")] == ["delivered"]
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [500, 200]


def test_star_fault_spares_auth_test_and_slack_level_error(
    fake: FakeSlack, client: WebClient
) -> None:
    fake.fail("*", times=None, status=200, error="channel_not_found")
    assert client.auth_test()["ok"] is True
    for _ in range(2):
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel="C1", text="x")
        assert slack_error(excinfo) == "channel_not_found"
        assert excinfo.value.response.status_code == 200
    fake.clear_faults()
    client.chat_postMessage(channel="C1", text="ok now")
    assert len(fake.messages("C1")) == 1


def test_fault_429_has_retry_after(fake: FakeSlack, client: WebClient) -> None:
    fake.fail("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C1", text="x")
    assert excinfo.value.response.status_code == 429
    assert excinfo.value.response.headers["Retry-After"] == "7"
    assert slack_error(excinfo) == "ratelimited"
    assert fake.messages("C1") == []


def test_delay_slows_calls_and_can_outlast_the_client_timeout(
    fake: FakeSlack, client: WebClient
) -> None:
    fake.fail("chat.postMessage", status=200, error="", delay=0.2)  # slow but successful
    start = time.monotonic()
    client.chat_postMessage(channel="C1", text="slow")
    assert time.monotonic() - start >= 0.2

    fake.fail("chat.postMessage", status=200, error="", delay=1.2)
    impatient = WebClient(token=TOKEN, base_url=fake.base_url, timeout=1)
    impatient.retry_handlers = []
    with pytest.raises(TimeoutError):
        impatient.chat_postMessage(channel="C1", text="timed out")
    # Like a real timeout the outcome is unknown to the caller: the message still lands.
    deadline = time.monotonic() + 2
    while len(fake.messages("C1")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [m["text"] for m in fake.messages("C1")] == ["slow", "timed out"]


def test_channel_rate_limit() -> None:
    with FakeSlack(channel_rate_limit=1.0, serves_feedbot=False, scopes=ALL_SCOPES) as fake:
        client = WebClient(token=TOKEN, base_url=fake.base_url)
        client.chat_postMessage(channel="C1", text="one")
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel="C1", text="too soon")
        assert excinfo.value.response.status_code == 429
        assert excinfo.value.response.headers["Retry-After"] == "1"
        client.chat_postMessage(channel="C2", text="other channel is fine")
        time.sleep(1.05)
        client.chat_postMessage(channel="C1", text="two")
        assert fake.rate_limited_count == 1
        assert [m["text"] for m in fake.messages("C1")] == ["one", "two"]


def test_each_method_is_held_to_its_tier_per_minute() -> None:
    now = [1_800_000_000.0]
    with FakeSlack(clock=lambda: now[0]) as fake:
        fake.add_user("U1")
        client = WebClient(token=TOKEN, base_url=fake.base_url)
        for _ in range(50):  # users.info is Tier 4: 100 a minute
            client.users_info(user="U1")
        for _ in range(50):
            now[0] += 0.5
            client.users_info(user="U1")
        with pytest.raises(SlackApiError) as excinfo:
            client.users_info(user="U1")
        assert excinfo.value.response.status_code == 429
        assert excinfo.value.response["error"] == "ratelimited"
        # The first fifty leave the minute 35 s from now (25 s have passed).
        assert excinfo.value.response.headers["Retry-After"] == "35"
        assert fake.rate_limited_by == {"users.info": 1}
        assert client.auth_test()["ok"], "another method is counted apart"
        now[0] += 35
        client.users_info(user="U1")  # the first fifty have left the minute
        for _ in range(49):
            client.users_info(user="U1")
        with pytest.raises(SlackApiError):
            client.users_info(user="U1")
        assert fake.rate_limited_by == {"users.info": 2}, "a refused call does not count"


def test_a_tier_three_method_allows_fifty_a_minute() -> None:
    now = [1_800_000_000.0]
    with FakeSlack(clock=lambda: now[0]) as fake:
        fake.add_user("U1")
        client = WebClient(token=TOKEN, base_url=fake.base_url)
        for _ in range(50):
            client.conversations_open(users="U1")
        now[0] += 5
        with pytest.raises(SlackApiError) as excinfo:
            client.conversations_open(users="U1")
        assert excinfo.value.response.status_code == 429
        assert excinfo.value.response.headers["Retry-After"] == "55"


# ------------------------------------------------------------------ Block Kit checks


def rejected(client: WebClient, method: str, args: dict[str, Any]) -> str:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call(method, json=args)
    return slack_error(excinfo)


def test_too_many_blocks(fake: FakeSlack, client: WebClient) -> None:
    blocks = [{"type": "divider"} for _ in range(51)]
    assert rejected(
        client, "chat.postMessage", {"channel": "C1", "text": "x", "blocks": blocks}
    ) == ("invalid_blocks")
    assert fake.violations == ["chat.postMessage: 51 blocks > 50"]
    assert fake.messages("C1") == []
    with pytest.raises(AssertionError, match="51 blocks > 50"):
        fake.assert_no_violations()


@pytest.mark.parametrize(
    ("method", "args", "error", "rule"),
    [
        (
            "chat.postMessage",
            {
                "text": "x",
                "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            },
            "invalid_blocks",
            "header text 151 > 150",
        ),
        (
            "chat.postMessage",
            {"text": "x", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]},
            "invalid_blocks",
            "header text must be plain_text",
        ),
        (
            "chat.postMessage",
            {
                "text": "x",
                "blocks": [
                    {
                        "type": "actions",
                        "elements": [
                            {"type": "button", "text": {"type": "plain_text", "text": "b" * 76}}
                        ],
                    }
                ],
            },
            "invalid_blocks",
            "button text 76 > 75",
        ),
        (
            "chat.postMessage",
            {"blocks": [section("no fallback")]},
            "invalid_blocks",
            "missing fallback text",
        ),
        (
            "chat.update",
            {"ts": "", "blocks": [section("x")]},
            "invalid_blocks",
            "missing fallback text",
        ),
        (
            "chat.postMessage",
            {"text": "x", "blocks": [section("a", block_id="b1"), section("b", block_id="b1")]},
            "invalid_blocks",
            "duplicate block_id 'b1'",
        ),
        (
            "chat.postMessage",
            {"text": "x", "blocks": [section("s" * 3001)]},
            "invalid_blocks",
            "section text 3001 > 3000",
        ),
        (
            "chat.postMessage",
            {"text": "x", "blocks": [{"type": "table"}]},
            "invalid_blocks",
            "unknown block type 'table'",
        ),
        ("chat.postMessage", {"text": "t" * 40_001}, "msg_too_long", "text 40001 > 40000"),
        (
            "chat.postMessage",
            {
                "text": "x",
                "blocks": [
                    {
                        "type": "input",
                        "label": {"type": "plain_text", "text": "l"},
                        "element": {"type": "plain_text_input"},
                    }
                ],
            },
            "invalid_blocks",
            "input blocks are only allowed in modals",
        ),
        (
            "views.open",
            {
                "trigger_id": "t",
                "view": {**modal(section("x")), "title": {"type": "plain_text", "text": "T" * 25}},
            },
            "invalid_arguments",
            "view title 25 > 24",
        ),
        (
            "views.open",
            {
                "trigger_id": "t",
                "view": modal(
                    {
                        "type": "input",
                        "label": {"type": "plain_text", "text": "Your feedback"},
                        "element": {"type": "plain_text_input", "max_length": 5000},
                    },
                    submit={"type": "plain_text", "text": "Send"},
                ),
            },
            "invalid_arguments",
            "plain_text_input max_length 5000 > 3000",
        ),
        (
            "views.open",
            {
                "trigger_id": "t",
                "view": modal(
                    {
                        "type": "input",
                        "label": {"type": "plain_text", "text": "x"},
                        "element": {"type": "plain_text_input"},
                    }
                ),
            },
            "invalid_arguments",
            "modal with input blocks needs submit",
        ),
        (
            "views.open",
            {"trigger_id": "t", "view": modal(section("x" * 3000), private_metadata="m" * 250_000)},
            "view_too_large",
            "bytes > 250000",
        ),
        (
            "views.publish",
            {"user_id": "U1", "view": modal(section("x"))},
            "invalid_arguments",
            "views.publish needs a home view",
        ),
    ],
)
def test_violations_are_detected(
    fake: FakeSlack, client: WebClient, method: str, args: dict[str, Any], error: str, rule: str
) -> None:
    if method.startswith("chat."):
        posted = client.chat_postMessage(channel="C1", text="target")
        args = {"channel": "C1", **args, **({"ts": posted["ts"]} if "ts" in args else {})}
    assert rejected(client, method, args) == error
    assert any(v.startswith(f"{method}: ") and rule in v for v in fake.violations), fake.violations
    assert fake.calls[-1].response["ok"] is False


def test_select_and_choice_rules(fake: FakeSlack, client: WebClient) -> None:
    option = {"text": {"type": "plain_text", "text": "A"}, "value": "a"}
    bad_initial = {
        "type": "static_select",
        "action_id": "s",
        "options": [option],
        "initial_option": {"text": {"type": "plain_text", "text": "B"}, "value": "b"},
    }
    overflow = {"type": "overflow", "action_id": "o", "options": [option]}
    blocks = [
        {
            "type": "actions",
            "elements": [bad_initial, overflow, {**overflow, "options": [option] * 2}],
        }
    ]
    assert rejected(
        client, "chat.postMessage", {"channel": "C1", "text": "x", "blocks": blocks}
    ) == ("invalid_blocks")
    joined = "\n".join(fake.violations)
    assert "initial_option is not one of the options" in joined
    assert "overflow options count 1 not in 2..5" in joined
    assert "duplicate action_id 'o'" in joined


def test_valid_rich_message_and_modal_pass(fake: FakeSlack, client: WebClient) -> None:
    option = {"text": {"type": "plain_text", "text": "Great"}, "value": "great"}
    confirm = {
        "title": {"type": "plain_text", "text": "Sure?"},
        "text": {"type": "mrkdwn", "text": "This *cannot* be undone."},
        "confirm": {"type": "plain_text", "text": "Yes"},
        "deny": {"type": "plain_text", "text": "No"},
    }
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Weekly feedback"}},
        section(
            "*Hello* <@U1>",
            block_id="intro",
            accessory={"type": "image", "image_url": "https://x/y.png", "alt_text": "y"},
        ),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{i}*"} for i in range(10)]},
        {"type": "divider"},
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": "from the floor"},
                {"type": "image", "image_url": "https://x/z.png", "alt_text": "z"},
            ],
        },
        {
            "type": "actions",
            "block_id": "act",
            "elements": [
                {
                    "type": "button",
                    "action_id": "ok",
                    "text": {"type": "plain_text", "text": "OK"},
                    "style": "primary",
                    "value": "1",
                },
                {
                    "type": "button",
                    "action_id": "no",
                    "text": {"type": "plain_text", "text": "No"},
                    "style": "danger",
                    "confirm": confirm,
                },
                {
                    "type": "static_select",
                    "action_id": "sel",
                    "placeholder": {"type": "plain_text", "text": "Pick"},
                    "options": [option],
                    "initial_option": option,
                },
                {
                    "type": "overflow",
                    "action_id": "more",
                    "options": [option, {**option, "value": "meh"}],
                },
                {"type": "users_select", "action_id": "who"},
                {"type": "datepicker", "action_id": "when"},
            ],
        },
        {
            "type": "image",
            "image_url": "https://x/big.png",
            "alt_text": "chart",
            "title": {"type": "plain_text", "text": "Chart"},
        },
        {
            "type": "rich_text",
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": "hi"}]}
            ],
        },
        {"type": "markdown", "text": "**bold**"},
    ]
    client.chat_postMessage(channel="C1", text="Weekly feedback", blocks=blocks)
    stored = fake.messages("C1")[0]["blocks"]
    assert without_block_ids(stored) == without_block_ids(blocks)
    assert all(block["block_id"] for block in stored), "Slack names every block"
    assert [b["block_id"] for b in stored if b["block_id"] == "intro"] == ["intro"]

    view = modal(
        {
            "type": "input",
            "block_id": "text",
            "label": {"type": "plain_text", "text": "Feedback"},
            "hint": {"type": "plain_text", "text": "Be kind"},
            "element": {
                "type": "plain_text_input",
                "action_id": "v",
                "multiline": True,
                "max_length": 3000,
                "initial_value": "draft",
            },
        },
        {
            "type": "input",
            "block_id": "mood",
            "label": {"type": "plain_text", "text": "Mood"},
            "element": {
                "type": "radio_buttons",
                "action_id": "m",
                "options": [
                    {
                        "text": {"type": "mrkdwn", "text": "*good*"},
                        "value": "g",
                        "description": {"type": "plain_text", "text": "fine"},
                    }
                ],
            },
        },
        {
            "type": "input",
            "block_id": "tags",
            "optional": True,
            "label": {"type": "plain_text", "text": "Tags"},
            "element": {"type": "checkboxes", "action_id": "c", "options": [option]},
        },
        {
            "type": "input",
            "block_id": "num",
            "label": {"type": "plain_text", "text": "How many"},
            "element": {"type": "number_input", "action_id": "n", "is_decimal_allowed": False},
        },
        {
            "type": "input",
            "block_id": "chan",
            "label": {"type": "plain_text", "text": "Where"},
            "element": {"type": "conversations_select", "action_id": "ch"},
        },
        submit={"type": "plain_text", "text": "Send"},
        close={"type": "plain_text", "text": "Cancel"},
        private_metadata=json.dumps({"channel": "C1"}),
        callback_id="feedback",
    )
    client.views_open(trigger_id=fake.new_trigger_id(), view=view)
    client.views_publish(user_id="U1", view={"type": "home", "blocks": blocks})
    fake.assert_no_violations()
    assert all(call.status == 200 and call.response["ok"] for call in fake.calls)


# ------------------------------------------------------------------ files and response URLs


def test_files_upload_v2_end_to_end(fake: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="report follows")
    response = client.files_upload_v2(
        channel="C1",
        content=b"a,b\n1,2\n",
        filename="report.csv",
        title="Weekly report",
        initial_comment="Here it is",
        thread_ts=parent["ts"],
    )
    file_id = response["file"]["id"]
    assert response["files"] == [{"id": file_id, "title": "Weekly report"}]
    assert fake.files == [
        {
            "id": file_id,
            "filename": "report.csv",
            "title": "Weekly report",
            "content": b"a,b\n1,2\n",
            "channel_id": "C1",
            "initial_comment": "Here it is",
            "thread_ts": parent["ts"],
        }
    ]
    message = fake.messages("C1")[-1]
    assert message["text"] == "Here it is"
    assert message["thread_ts"] == parent["ts"]
    assert message["files"][0]["id"] == file_id
    assert [c.method for c in fake.calls] == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]
    fake.assert_no_violations()


def test_response_url_recording(fake: FakeSlack) -> None:
    url = fake.new_response_url()
    assert url.startswith(fake.base_url.removesuffix("api/") + "response/")
    body = {"response_type": "ephemeral", "text": "Thanks!", "replace_original": False}
    assert post_json(url, body) == {"ok": True}
    assert fake.responses == [{**body, "_url": url}]

    too_many = {"text": "x", "blocks": [{"type": "divider"}] * 51}
    assert post_json(url, too_many) == {"ok": False, "error": "invalid_blocks"}
    assert len(fake.responses) == 1
    assert fake.violations == ["response_url: 51 blocks > 50"]


# ------------------------------------------------------------------ mentions


def test_mentions(fake: FakeSlack) -> None:
    payload = {
        "text": "Heads up <!channel>",
        "blocks": [
            section("for <@U123|ada> and <!subteam^S9>"),
            {"type": "header", "text": {"type": "plain_text", "text": "<!here> in plain text"}},
            section("escaped &lt;!channel&gt; and a link <#C1> and <!date^1|x>"),
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "<@U999>"}}],
            },
        ],
    }
    assert fake.mentions(payload) == ["<!channel>", "<@U123>", "<!subteam^S9>"]
    assert fake.mentions({"type": "plain_text", "text": "<!everyone>"}) == []
    assert fake.mentions("&lt;!channel&gt;") == []


def test_a_response_url_takes_five_posts_within_thirty_minutes() -> None:
    now = [1_800_000_000.0]
    with FakeSlack(clock=lambda: now[0]) as slack:
        used, old = slack.new_response_url(), slack.new_response_url()

        def post(url: str) -> int:
            request = urllib.request.Request(
                url, data=b'{"text": "hi"}', headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as reply:
                    return int(reply.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert [post(used) for _ in range(6)] == [200] * 5 + [404]
        now[0] += 30 * 60
        assert post(old) == 200
        now[0] += 1
        assert post(old) == 404
        assert slack.refused_responses == [used, old]
        assert len(slack.responses) == 6


def test_a_request_cut_short_is_not_acted_on() -> None:
    """A bot killed while sending leaves a body shorter than its Content-Length: the fake,
    like Slack, neither records it nor finds fault with what never arrived."""
    import socket
    from urllib.parse import urlsplit

    with FakeSlack() as slack:
        url = slack.new_response_url()
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port)) as connection:
            connection.sendall(
                f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                'Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{"te'.encode()
            )
            connection.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := connection.recv(4096):
                reply += chunk
        assert b"incomplete_request" in reply
        assert slack.responses == []
        slack.assert_no_violations()
