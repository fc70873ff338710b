"""Photos and files reach leadership with the report, and tell no more than the reporter
meant (issue 13): every way in takes files; feedbot downloads each with its own token and
uploads its own copy, images without metadata, to the card's thread; limits are explained
in the reporter's language; files follow the report's life."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlmodel import Session, select

from feedbot import jobs
from feedbot.core import attachments
from feedbot.core.attachments import IncomingFile
from feedbot.models import Attachment, AttachmentState
from feedbot.slack import files
from tests.fakeslack import FakeSlack
from tests.harness import ALICE, BOB, CAROL, LEADER, LEADERSHIP, TOKEN, Bot
from tests.test_anonymity import file_anonymously, latest_dm_with
from tests.test_privacy import feedbot_cli, resolve
from tests.test_reporting import form_values

GPS_IFD = 0x8825
MAKE, MODEL, ARTIST, ORIENTATION, DATETIME = 0x010F, 0x0110, 0x013B, 0x0112, 0x0132


def photo_with_exif(*, size: tuple[int, int] = (40, 20), orientation: int = 1) -> bytes:
    """A JPEG as a phone writes it: camera, owner, time and GPS position in its EXIF."""
    image = Image.new("RGB", size, (200, 30, 30))
    image.putpixel((0, 0), (0, 0, 255))
    exif = Image.Exif()
    exif[MAKE] = "Apple"
    exif[MODEL] = "iPhone 15 Pro"
    exif[ARTIST] = "Alice Technician"
    exif[DATETIME] = "2026:11:18 08:42:00"
    exif[ORIENTATION] = orientation
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (51.0, 20.0, 15.5), 3: "E", 4: (12.0, 22.0, 30.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    content = out.getvalue()
    assert b"iPhone 15 Pro" in content and Image.open(io.BytesIO(content)).getexif()
    return content


def assert_no_metadata(content: bytes) -> None:
    with Image.open(io.BytesIO(content)) as image:
        assert not image.getexif(), "no EXIF at all"
        assert "exif" not in image.info
    for secret in (b"Exif", b"Apple", b"iPhone", b"Alice", b"2026:11:18"):
        assert secret not in content, secret


def dm_photo(bot: Bot, user: str, text: str, *file_objects: dict[str, Any]) -> str:
    dm = bot.slack.dm_channel(user)
    _, ts = bot.message(user, text, channel=dm, channel_type="im", files=list(file_objects))
    return ts


def thread_files(bot: Bot, report: Any) -> list[dict[str, Any]]:
    """The files feedbot shared in the card's thread, as Slack shows them."""
    card = bot.card(report)
    return [
        f
        for m in bot.slack.messages(LEADERSHIP)
        if m.get("thread_ts") == card["ts"]
        for f in m.get("files") or []
    ]


def uploaded(bot: Bot, file_id: str) -> dict[str, Any]:
    return next(f for f in bot.slack.files if f["id"] == file_id)


# --------------------------------------------------------------------------- every way in


def test_a_photo_sent_by_dm_reaches_the_cards_thread_without_its_metadata(bot: Bot) -> None:
    bot.setup_team()
    original = photo_with_exif()
    photo = bot.slack.add_file(ALICE, "mast-17.jpg", original)
    dm_photo(bot, ALICE, "Antenna bracket at mast 17 is bent", photo)
    report = bot.report()
    assert bot.slack.files == [], "nothing is fetched inside Slack's request"
    bot.drain()

    shared = thread_files(bot, report)
    assert [f["name"] for f in shared] == ["mast-17.jpg"]
    copy = uploaded(bot, shared[0]["id"])
    assert copy["id"] != photo["id"], "a copy, not the reporter's file"
    assert_no_metadata(copy["content"])
    with Image.open(io.BytesIO(copy["content"])) as image:
        assert image.size == (40, 20)
    served = [d for d in bot.slack.downloads if d["file"] == photo["id"]]
    assert served and all(d["served"] and d["token"] == TOKEN for d in served)
    assert bot.slack.file(photo["id"])["content"] == original, "the original is left alone"

    card = bot.card(report)
    assert "*Photos and files*\n1 photo" in json.dumps(card["blocks"]).replace("\\n", "\n")
    image = next(b for b in card["blocks"] if b["type"] == "image")
    assert image["slack_file"] == {"id": copy["id"]}
    assert {"channel": LEADERSHIP, "ts": card["ts"], "file": copy["id"]} in bot.slack.images_shown


def test_the_photo_is_turned_upright_as_the_camera_recorded(bot: Bot) -> None:
    bot.setup_team()
    photo = bot.slack.add_file(ALICE, "sideways.jpg", photo_with_exif(orientation=6))
    dm_photo(bot, ALICE, "Display cracked", photo)
    bot.drain()
    copy = uploaded(bot, thread_files(bot, bot.report())[0]["id"])
    assert_no_metadata(copy["content"])
    with Image.open(io.BytesIO(copy["content"])) as image:
        assert image.size == (20, 40), "rotated by 90°, then the tag dropped"


def test_an_intake_post_brings_its_photo_and_its_pdf(bot: Bot) -> None:
    bot.setup_team()
    photo = bot.slack.add_file(BOB, "Kasse.jpg", photo_with_exif())
    pdf = bot.slack.add_file(
        BOB, "Fehlerprotokoll.pdf", b"%PDF-1.4 log", mimetype="application/pdf"
    )
    bot.message(BOB, "Kasse 2 zeigt Fehler 0x17", files=[photo, pdf])
    report = bot.report()
    assert report.source == "intake_channel"
    bot.drain()
    assert sorted(f["name"] for f in thread_files(bot, report)) == [
        "Fehlerprotokoll.pdf",
        "Kasse.jpg",
    ]
    pdf_copy = next(f for f in bot.slack.files if f["filename"] == "Fehlerprotokoll.pdf")
    assert pdf_copy["content"] == b"%PDF-1.4 log"
    assert "1 photo · 1 file" in json.dumps(bot.card(report)["blocks"], ensure_ascii=False)


def test_a_message_with_only_a_photo_is_a_report_named_after_it(bot: Bot) -> None:
    bot.setup_team()
    photo = bot.slack.add_file(ALICE, "leak.jpg", photo_with_exif())
    dm_photo(bot, ALICE, "", photo)
    assert bot.report().text == "leak.jpg"
    bot.drain()
    assert len(thread_files(bot, bot.report())) == 1


def test_the_message_shortcut_carries_the_files_of_the_message(bot: Bot) -> None:
    bot.setup_team()
    photo = bot.slack.add_file(BOB, "regal.jpg", photo_with_exif())
    message = {
        "type": "message",
        "user": BOB,
        "ts": "1763456789.000200",
        "text": "Regal im Lager ist umgekippt",
        "files": [photo],
        "upload": False,
    }
    bot.shortcut(ALICE, message, channel="CSHOP0001")
    view = bot.last_view()
    assert bot.submit(ALICE, view, form_values("Regal im Lager ist umgekippt")).status == 200
    report = bot.report()
    bot.drain()
    assert [f["name"] for f in thread_files(bot, report)] == ["regal.jpg"]


def test_the_form_takes_photos_and_anonymous_ones_are_uploaded_by_feedbot(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "")
    view = bot.last_view()
    field = next(b for b in view["blocks"] if b.get("block_id") == "files")
    assert field["element"]["type"] == "file_input"
    assert field["element"]["max_files"] == 5
    assert set(field["element"]["filetypes"]) >= {"jpg", "png", "pdf"}
    photo = bot.slack.add_file(ALICE, "IMG_0042.jpg", photo_with_exif())
    values = form_values(
        "Manager shouts at staff in front of customers",
        anonymous={"type": "checkboxes", "selected_options": [{"value": "yes"}]},
        files={"type": "file_input", "files": [photo]},
    )
    assert bot.submit(ALICE, view, values).status == 200
    report = bot.report()
    assert report.anonymous
    bot.drain()
    shared = thread_files(bot, report)
    assert len(shared) == 1
    copy = uploaded(bot, shared[0]["id"])
    assert bot.slack.file(copy["id"])["by_bot"], "uploaded by feedbot"
    assert bot.slack.file(copy["id"])["file"]["user"] != ALICE
    assert_no_metadata(copy["content"])
    said = json.dumps([copy["title"], copy["filename"], copy["initial_comment"]])
    assert ALICE not in said and "alice" not in said.lower()
    thread = [m for m in bot.slack.messages(LEADERSHIP) if m.get("thread_ts")]
    assert ALICE not in json.dumps(thread)


def test_add_details_adds_more_files_later(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "Router in shop 4 overheats")
    report = bot.report()
    bot.drain()
    bot.press(ALICE, "report_add_details", str(report.id), channel="CGENERAL1")
    view = bot.last_view()
    photo = bot.slack.add_file(ALICE, "router.jpg", photo_with_exif())
    values = form_values(report.text, files={"type": "file_input", "files": [photo]})
    assert bot.submit(ALICE, view, values).status == 200
    bot.drain()
    assert "The reporter added 1 photo." in bot.thread(report)
    assert [f["name"] for f in thread_files(bot, report)] == ["router.jpg"]
    assert any(b["type"] == "image" for b in bot.card(report)["blocks"])


def test_a_photo_sent_after_a_report_joins_it_when_the_reporter_says_so(bot: Bot) -> None:
    """A DM right after a report may be about it ("here is the photo"): feedbot asks, and
    the photo goes where the reporter says, anonymous reports included."""
    bot.setup_team()
    report = file_anonymously(bot, ALICE, "Fence at mast 12 is open")
    bot.drain()
    dm = bot.slack.dm_channel(ALICE)
    photo = bot.slack.add_file(ALICE, "fence.jpg", photo_with_exif())
    dm_photo(bot, ALICE, "Here is the photo", photo)
    bot.drain()
    assert len(bot.reports()) == 1
    question = latest_dm_with(bot, ALICE, "dm_new_report")
    bot.click(ALICE, dm, question["ts"], f"dm_about_report-{report.id}")
    bot.drain()
    shared = thread_files(bot, report)
    assert [f["name"] for f in shared] == ["fence.jpg"]
    assert_no_metadata(uploaded(bot, shared[0]["id"])["content"])
    assert "The reporter added 1 photo." in bot.thread(report)

    other = bot.slack.add_file(ALICE, "coffee.jpg", photo_with_exif())
    dm_photo(bot, ALICE, "Coffee machine in Halle broken", other)
    bot.drain()
    question = latest_dm_with(bot, ALICE, "dm_new_report")
    bot.click(ALICE, dm, question["ts"], "dm_new_report")
    bot.drain()
    new = bot.report()
    assert new.id != report.id
    assert [f["name"] for f in thread_files(bot, new)] == ["coffee.jpg"]


# --------------------------------------------------------------------------- limits


def test_limits_are_explained_in_the_reporters_language(bot: Bot) -> None:
    bot.setup_team()
    small = [bot.slack.add_file(BOB, f"foto{n}.jpg", photo_with_exif()) for n in range(3)]
    video = bot.slack.add_file(
        BOB, "Video.mov", b"\x00" * 64, mimetype="video/quicktime", size=150 * 1024 * 1024
    )
    program = bot.slack.add_file(BOB, "fix<it>.exe", b"MZ", mimetype="application/x-msdownload")
    dm_photo(bot, BOB, "Rolltor in Filiale Halle klemmt", *small, video, program)
    report = bot.report()
    bot.drain()
    assert len(thread_files(bot, report)) == 3
    told = "\n".join(bot.dms(BOB))
    assert "3 von 5 Dateien wurden an *FB-1001* angehängt." in told
    assert "*Video.mov* war zu groß: 150 MB, höchstens 50 MB." in told
    assert "*fix&lt;it&gt;.exe* ist eine Dateiart" in told, "file names are escaped"
    with Session(bot.engine) as session:
        states = sorted(
            (row.name, row.state, row.reason) for row in session.exec(select(Attachment))
        )
    assert states[0] == ("Video.mov", AttachmentState.REFUSED, "too_large")


def test_no_more_than_five_files_and_a_hundred_megabytes_per_report() -> None:
    def incoming(n: int, size: int, mimetype: str = "image/jpeg") -> IncomingFile:
        return IncomingFile(file_id=f"F{n}", name=f"f{n}", mimetype=mimetype, size=size)

    mb = 1024 * 1024
    accepted, refused = attachments.check_limits([incoming(n, mb) for n in range(7)])
    assert len(accepted) == 5 and [r.reason for r in refused] == ["too_many", "too_many"]
    accepted, refused = attachments.check_limits([incoming(n, 40 * mb) for n in range(3)])
    assert len(accepted) == 2 and refused[0].reason == "report_too_large"
    for kind in ("image/svg+xml", "image/heic", "application/zip"):
        _, refused = attachments.check_limits([incoming(1, mb, kind)])
        assert refused[0].reason == "type", kind


def test_in_english_the_reporter_reads_the_same(bot: Bot) -> None:
    bot.setup_team()
    video = bot.slack.add_file(
        ALICE, "clip.mp4", b"\x00", mimetype="video/mp4", size=150 * 1024 * 1024
    )
    photo = bot.slack.add_file(ALICE, "a.jpg", photo_with_exif())
    dm_photo(bot, ALICE, "Counter light flickers", photo, video)
    bot.drain()
    told = "\n".join(bot.dms(ALICE))
    assert "1 of 2 files were attached to *FB-1001*." in told
    assert "*clip.mp4* was too large: 150 MB, at most 50 MB." in told


def test_a_file_that_cannot_be_fetched_leaves_a_line_never_a_lost_report(bot: Bot) -> None:
    bot.setup_team()
    gone = bot.slack.add_file(ALICE, "gone.jpg", photo_with_exif())
    hidden = bot.slack.add_file(ALICE, "private.pdf", b"%PDF-1", mimetype="application/pdf")
    kept = bot.slack.add_file(ALICE, "kept.jpg", photo_with_exif())
    dm_photo(bot, ALICE, "Fibre cabinet open at Gohlis", gone, hidden, kept)
    bot.slack.delete_file(gone["id"])
    bot.slack.hide_file_content(hidden["id"])  # Slack answers its sign-in page
    report = bot.report()
    bot.drain()
    assert [f["name"] for f in thread_files(bot, report)] == ["kept.jpg"]
    thread = bot.thread(report)
    assert ":warning: gone.jpg could not be fetched: it was deleted." in thread
    assert ":warning: private.pdf could not be fetched: feedbot has no access to it." in thread
    assert not any(f["filename"] == "private.pdf" for f in bot.slack.files), "no HTML page"
    with Session(bot.engine) as session:
        reasons = {row.name: row.reason for row in session.exec(select(Attachment))}
    assert reasons == {"gone.jpg": "file_deleted", "private.pdf": "no_access", "kept.jpg": None}
    assert "1 photo" in json.dumps(bot.card(report)["blocks"], ensure_ascii=False)


def test_images_feedbot_cannot_clean_are_never_copied_with_their_metadata(bot: Bot) -> None:
    bot.setup_team()
    heic = bot.slack.add_file(ALICE, "IMG.HEIC", b"\x00\x00\x00\x18ftypheic", mimetype="image/heic")
    broken = bot.slack.add_file(ALICE, "broken.jpg", b"\xff\xd8\xff not really a photo")
    dm_photo(bot, ALICE, "Ladder broken", heic, broken)
    bot.drain()
    assert bot.slack.files == []
    told = "\n".join(bot.dms(ALICE))
    assert "*IMG.HEIC* is a kind of file feedbot does not take (image/heic)" in told
    assert any(
        "broken.jpg was not attached: its location and camera data could not be removed" in t
        for t in bot.thread(bot.report())
    )


# --------------------------------------------------------------------------- the report's life


def test_forwarding_a_report_forwards_its_files(bot: Bot) -> None:
    bot.setup_team()
    photo = bot.slack.add_file(ALICE, "mast.jpg", photo_with_exif())
    dm_photo(bot, ALICE, "Mast 9 cable loose", photo)
    report = bot.report()
    bot.drain()
    bot.slack.add_channel("CNETWORK1", name="network-team")
    bot.press_card(LEADER, "triage_forward", report)
    bot.submit(LEADER, bot.last_view(), {"channel": {"selected_conversation": "CNETWORK1"}})
    bot.drain()
    posted = bot.slack.messages("CNETWORK1")
    top = next(m for m in posted if not m.get("thread_ts"))
    assert not any(b["type"] == "image" for b in top["blocks"]), "its thread has the photo"
    in_thread = [f for m in posted if m.get("thread_ts") == top["ts"] for f in m["files"]]
    assert [f["name"] for f in in_thread] == ["mast.jpg"]
    copy = uploaded(bot, in_thread[0]["id"])
    assert_no_metadata(copy["content"])


def test_purge_deletes_feedbots_copies_in_slack(bot: Bot) -> None:
    bot.setup_team()
    bot.configure(retention_days="30")
    photo = bot.slack.add_file(ALICE, "old.jpg", photo_with_exif())
    dm_photo(bot, ALICE, "Old problem with a photo", photo)
    report = bot.report()
    resolve(bot, report)
    bot.drain()
    copy_id = thread_files(bot, report)[0]["id"]
    bot.clock.advance(days=31)
    woken: list[int] = []
    bot.deps.on_commit = lambda: woken.append(1)  # the senders hear of the deletions
    jobs.purge_expired(bot.deps)
    assert woken
    bot.drain()
    assert bot.reports() == []
    assert bot.slack.file(copy_id)["deleted"]
    assert not bot.slack.file(photo["id"])["deleted"], "the reporter's own file stays"
    with Session(bot.engine) as session:
        assert session.exec(select(Attachment)).all() == []


def test_forget_user_deletes_the_copies_of_their_files(bot: Bot, tmp_path: Path) -> None:
    bot.setup_team()
    photo = bot.slack.add_file(ALICE, "alice-at-mast.jpg", photo_with_exif())
    dm_photo(bot, ALICE, "Mast 3 fence open", photo)
    other = bot.slack.add_file(BOB, "bob.jpg", photo_with_exif())
    dm_photo(bot, BOB, "Lager nass", other)
    alices, bobs = bot.reports()
    bot.drain()
    alice_copy = thread_files(bot, alices)[0]["id"]
    bob_copy = thread_files(bot, bobs)[0]["id"]
    result = feedbot_cli(bot, tmp_path, "forget-user", ALICE)
    assert result.returncode == 0, result.stderr
    assert "1 copies of files to delete" in result.stdout, result.stdout
    bot.clock.now = datetime.now(UTC) + timedelta(seconds=1)  # the CLI queued it at real time
    bot.drain()
    assert bot.slack.file(alice_copy)["deleted"]
    assert not bot.slack.file(bob_copy)["deleted"]
    assert not any(b["type"] == "image" for b in bot.card(alices)["blocks"])


def test_export_lists_each_reports_files_by_name_and_size(bot: Bot, tmp_path: Path) -> None:
    bot.setup_team()
    pdf = bot.slack.add_file(ALICE, "plan.pdf", b"%PDF-1.4 twelve", mimetype="application/pdf")
    dm_photo(bot, ALICE, "Plan is wrong", pdf)
    bot.command(BOB, "No files here")
    result = feedbot_cli(bot, tmp_path, "export", "--since", "2026-01-01", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows[0]["files"] == "plan.pdf (15 bytes)"
    assert rows[1]["files"] == ""


# --------------------------------------------------------------------------- the fake is as strict as Slack


def test_the_fake_serves_private_files_only_to_the_bot_token_with_files_read() -> None:
    with FakeSlack(serves_feedbot=False) as fake:
        photo = fake.add_file(ALICE, "p.jpg", b"\xff\xd8\xffdata")
        assert files.download(photo["url_private"], token=TOKEN) == b"\xff\xd8\xffdata"
        with pytest.raises(files.Unfetchable, match="no_access"):
            files.download(photo["url_private"], token="xoxb-someone-else")
    without_read = FakeSlack(scopes=frozenset({"chat:write", "files:write"}), serves_feedbot=False)
    with without_read as fake:
        photo = fake.add_file(ALICE, "p.jpg", b"\xff\xd8\xffdata")
        with pytest.raises(files.Unfetchable, match="no_access"):
            files.download(photo["url_private_download"], token=TOKEN)


def test_the_fake_refuses_images_of_unknown_files_and_deleting_others_files() -> None:
    with FakeSlack(serves_feedbot=False) as fake:
        client = WebClient(token=TOKEN, base_url=fake.base_url)
        photo = fake.add_file(ALICE, "p.jpg", b"\xff\xd8\xffdata")
        image = {"type": "image", "alt_text": "p", "slack_file": {"id": "F0NOSUCH"}}
        with pytest.raises(SlackApiError) as refused:
            client.chat_postMessage(channel=LEADERSHIP, text="x", blocks=[image])
        assert refused.value.response["error"] == "invalid_blocks"
        fake.violations.clear()
        with pytest.raises(SlackApiError) as refused:
            client.files_delete(file=photo["id"])
        assert refused.value.response["error"] == "cant_delete_file"
        upload = client.files_upload_v2(content=b"abc", filename="a.txt", channel=LEADERSHIP)
        own = upload["files"][0]["id"]
        image["slack_file"] = {"id": own}
        client.chat_postMessage(channel=LEADERSHIP, text="x", blocks=[image])
        assert client.files_info(file=own)["file"]["name"] == "a.txt"
        client.files_delete(file=own)
        with pytest.raises(SlackApiError) as refused:
            client.files_info(file=own)
        assert refused.value.response["error"] == "file_deleted"


# --------------------------------------------------------------------------- the weekly digest


def test_the_digest_counts_reports_with_photos_and_links_a_theme_to_one(bot: Bot) -> None:
    bot.setup_team()
    bot.command(ALICE, "Drucker im Shop druckt keine Verträge mehr")
    bot.command(BOB, "Der Drucker druckt keine Verträge, Kunden warten")
    photo = bot.slack.add_file(CAROL, "drucker.jpg", photo_with_exif())
    bot.message(CAROL, "Drucker druckt seit heute keine Verträge", files=[photo])
    with_photo = bot.report()
    bot.command(ALICE, "Parkplatz gesperrt")
    bot.drain()
    bot.clock.advance(days=6)
    body = json.loads(bot.command(LEADER, "digest 2026-W47").body)
    text = json.dumps(body["blocks"], ensure_ascii=False)
    assert ":camera: *1* of the 4 new reports came with photos." in text
    card_ts = bot.card(with_photo)["ts"]
    link = f"https://frontline.slack.com/archives/{LEADERSHIP}/p{card_ts.replace('.', '')}"
    assert f":frame_with_picture: With a photo: <{link}|{with_photo.reference}>" in text


def test_file_names_ping_nobody_wherever_they_are_shown(bot: Bot) -> None:
    bot.setup_team()
    hostile = "<!channel> & <@ULEADER01>"
    gone = bot.slack.add_file(ALICE, f"{hostile}.jpg", photo_with_exif())
    program = bot.slack.add_file(ALICE, f"{hostile}.exe", b"MZ", mimetype="application/x-dosexec")
    dm_photo(bot, ALICE, "Strange files", gone, program)
    bot.slack.delete_file(gone["id"])
    bot.drain()
    report = bot.report()
    assert bot.slack.mentions(bot.slack.messages(LEADERSHIP)) == [f"<@{ALICE}>"], "the card"
    assert bot.slack.mentions(bot.slack.dm_messages(ALICE)) == []
    assert any(
        "&lt;!channel&gt; &amp; &lt;@ULEADER01&gt;.jpg could not" in t for t in bot.thread(report)
    )


def test_an_upload_slack_refuses_for_good_is_explained_in_the_thread(bot: Bot) -> None:
    bot.setup_team()
    photo = bot.slack.add_file(ALICE, "pole.jpg", photo_with_exif())
    dm_photo(bot, ALICE, "Pole leaning", photo)
    bot.slack.fail("files.completeUploadExternal", status=200, error="not_in_channel")
    bot.drain()
    report = bot.report()
    assert thread_files(bot, report) == []
    assert ":warning: Could not attach pole.jpg: Slack answered `not_in_channel`." in bot.thread(
        report
    )
    with Session(bot.engine) as session:
        (row,) = session.exec(select(Attachment)).all()
    assert (row.state, row.reason) == (AttachmentState.UNFETCHABLE, "not_in_channel")
    assert "photo" not in json.dumps(bot.card(report)["blocks"]), "the card counts it no more"


def test_png_text_and_exif_are_removed_too() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Alice Technician")
    exif = Image.Exif()
    exif[MAKE] = "Apple"
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, "PNG", pnginfo=info, exif=exif)
    assert b"Alice" in out.getvalue()
    cleaned = files.without_metadata(out.getvalue())
    assert_no_metadata(cleaned)
    with Image.open(io.BytesIO(cleaned)) as image:
        assert image.format == "PNG" and image.getpixel((0, 0)) == (1, 2, 3)
