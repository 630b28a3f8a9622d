"""The README's offline TypeScript example: the code it shows is
client-js/examples/offline.mjs, and the command it gives runs that file as written,
from a copy of client-js/ as a fresh clone has it, against a live server."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.utils.docs import README, ROOT, code_blocks
from tests.utils.processes import end_group, spawn
from tests.utils.server import ServerProcess

EXAMPLE = ROOT / "client-js" / "examples" / "offline.mjs"


def run_command() -> str:
    """The README's one command that runs the offline TypeScript example."""
    lines = [
        line
        for block in code_blocks("sh", [README])
        for line in block.text.splitlines()
        if "examples/offline.mjs" in line
    ]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_readme_shows_the_example_file() -> None:
    blocks = [b for b in code_blocks("js", [README]) if b.text.startswith("// offline:")]
    assert len(blocks) == 1, "the README has one offline TypeScript example"
    assert blocks[0].text == EXAMPLE.read_text()


@pytest.mark.slow  # npm ci, tsc and a server
def test_the_offline_typescript_example_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the README's TypeScript example")
    # A copy, so the command's npm ci and build never touch the node_modules and dist
    # that other tests are using meanwhile; without them, as in a fresh clone.
    shutil.copytree(
        ROOT / "client-js",
        tmp_path / "client-js",
        ignore=shutil.ignore_patterns("node_modules", "dist", ".readme-*"),
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("OPENAI_API_KEY", "SESSION_MEMORY_API_KEY")
    }
    with ServerProcess(f"sqlite:///{tmp_path}/a.db", log_path=tmp_path / "log") as server:
        process = spawn(
            ["bash", "-c", f"set -euo pipefail\n{run_command()}"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "SESSION_MEMORY_BASE_URL": server.base_url},
        )
        try:
            out, err = process.communicate(timeout=300)
        finally:
            end_group(process)
    assert process.returncode == 0, out + err
    # npm and tsc print first; the example's own lines come last.
    assert out.splitlines()[-2:] == ["Ada.", "4 items stored"], out
