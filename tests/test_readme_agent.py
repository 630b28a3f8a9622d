"""The README's offline agent example, extracted from README.md and run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils.docs import README, code_blocks
from tests.utils.processes import end_group, spawn
from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow


def offline_example() -> str:
    blocks = [b for b in code_blocks("python") if b.text.startswith("# offline:")]
    assert len(blocks) == 1, "the docs have one offline agent example"
    assert blocks[0].path == README, "the offline agent example is on the front door"
    return blocks[0].text


def test_the_offline_example_file_is_the_readme_block() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "offline_agent.py"
    assert example.read_text() == offline_example()


def test_the_readme_says_the_first_example_needs_an_openai_key() -> None:
    text = README.read_text()
    first_example = text.index("## Use it from an agent")
    assert "OPENAI_API_KEY" in text[first_example : text.index("# offline:")]


def test_the_offline_agent_example_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "offline.py"
    script.write_text(offline_example())
    with ServerProcess(f"sqlite:///{tmp_path}/a.db", log_path=tmp_path / "log") as server:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("OPENAI_API_KEY", "SESSION_MEMORY_API_KEY")
        }
        process = spawn(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "SESSION_MEMORY_BASE_URL": server.base_url},
        )
        try:
            out, err = process.communicate(timeout=120)
        finally:
            end_group(process)
    assert process.returncode == 0, err
    assert out.splitlines() == ["Ada.", "4 items stored"]
