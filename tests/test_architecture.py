"""The domain core knows nothing of Slack; only feedbot.slack imports Bolt or the SDK."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "feedbot"
SLACK_PACKAGES = ("slack_bolt", "slack_sdk", "feedbot.slack")


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_and_models_do_not_import_slack() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            n for n in imports(path) if n.startswith(SLACK_PACKAGES)
        )
        for folder in ("core", "models")
        for path in (ROOT / folder).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_slack_layer_and_entry_points_import_bolt() -> None:
    allowed = {"cli.py", "jobs.py", "scheduler.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if "slack" not in path.relative_to(ROOT).parts
        and path.name not in allowed
        and "commands" not in path.relative_to(ROOT).parts
        and any(n.startswith(("slack_bolt", "slack_sdk")) for n in imports(path))
    ]
    assert offenders == []
