"""The run lease examples, run as written: the README's two concurrent ``Runner.run``
calls on one session (interleave, wait, reject), and the curl walk through the lease
routes in docs/api.md."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_any_language import run_block, shell_blocks
from tests.utils.docs import README, code_blocks
from tests.utils.processes import end_group, spawn
from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow


def lease_example() -> str:
    blocks = [b for b in code_blocks("python") if b.text.startswith("# leases:")]
    assert len(blocks) == 1, "the docs have one run lease example"
    assert blocks[0].path == README, "the run lease example is on the front door"
    return blocks[0].text


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("readme-leases")
    with ServerProcess(f"sqlite:///{folder}/r.db", log_path=folder / "log") as process:
        yield process


def test_the_three_ways_run_as_written(readme_server: ServerProcess, tmp_path: Path) -> None:
    script = tmp_path / "leases.py"
    script.write_text(lease_example())
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
        env={**env, "SESSION_MEMORY_BASE_URL": readme_server.base_url},
    )
    try:
        out, err = process.communicate(timeout=120)
    finally:
        end_group(process)
    assert process.returncode == 0, err
    # What the block's closing comments say it prints.
    promised = [line.removeprefix("# ") for line in lease_example().splitlines()[-3:]]
    assert (
        out.splitlines()
        == promised
        == [
            "interleave: user user assistant assistant (0 refused)",
            "wait: user assistant user assistant (0 refused)",
            "reject: user assistant (1 refused)",
        ]
    )


def test_the_curl_walk_through_the_lease_routes(
    readme_server: ServerProcess, tmp_path: Path
) -> None:
    block = next(b.text for b in shell_blocks() if "/lease" in b.text)
    codes = run_block(block, readme_server.base_url, tmp_path)
    assert codes == [
        200,  # acquire
        201,  # a write with the token
        409,  # a write without one
        200,  # renew
        200,  # which run holds it
        204,  # release
        404,  # none does now
    ]
