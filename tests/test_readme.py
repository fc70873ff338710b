"""The README stays true: its commands parse and run, and it names every setting."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from feedbot.cli import build_parser
from feedbot.core.config import KEYS
from feedbot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
COMMANDS = [
    line.strip().split("#")[0].strip()
    for block in re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    for line in block.splitlines()
    if line.strip().startswith((".venv/bin/feedbot", "feedbot "))
]


def test_the_quick_start_is_two_make_targets() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert re.findall(r"```sh\n(.*?)```", quick_start, re.DOTALL) == ["make run\nmake test\n"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_readme_names_every_runtime_key_and_environment_variable() -> None:
    assert [key for key in KEYS if f"`{key}`" not in README] == []
    assert [name for name in Settings.model_fields if f"`{name.upper()}`" not in README] == []


def test_the_readme_explains_exactly_the_scopes_the_manifest_asks_for() -> None:
    from feedbot.slack.scopes import bot_scopes

    section = README.split("## Slack features and scopes", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    explained = {
        scope for line in table for scope in re.findall(r"`([a-z.:]+)`", line.split("|")[1])
    }
    assert explained == set(bot_scopes())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_documented_command_parses(command: str) -> None:
    argv = shlex.split(command)[1:]
    build_parser().parse_args(argv)


def test_the_documented_config_commands_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FEEDBOT_"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'feedbot.db'}"
    for command in (c for c in COMMANDS if " config set " in c):
        argv = shlex.split(command)[1:]
        result = subprocess.run(
            [sys.executable, "-m", "feedbot", *argv],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (command, result.stderr)
