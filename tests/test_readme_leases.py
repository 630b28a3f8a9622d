"""The README's run lease examples, extracted from README.md and run as written: two
concurrent ``Runner.run`` calls on one session (interleave, wait, reject), and the
curl walk through the lease routes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_any_language import run_block, shell_blocks
from tests.utils.processes import end_group, spawn
from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"


def lease_examples() -> dict[str, str]:
    blocks = re.findall(r"```python\n(# leases: (\w+).*?)```", README.read_text(), re.S)
    return {name: text for text, name in blocks}


def test_the_readme_has_the_three_ways() -> None:
    assert set(lease_examples()) == {"setup", "interleave", "wait", "reject"}


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("readme-leases")
    with ServerProcess(f"sqlite:///{folder}/r.db", log_path=folder / "log") as process:
        yield process


@pytest.mark.parametrize(
    ("name", "printed"),
    [
        ("interleave", ["user user assistant assistant"]),
        ("wait", ["user assistant user assistant"]),
        ("reject", ["1 refused: 409 urn:session-memory:problem:session-leased", "user assistant"]),
    ],
)
def test_the_example_runs_as_written(
    readme_server: ServerProcess, tmp_path: Path, name: str, printed: list[str]
) -> None:
    examples = lease_examples()
    script = tmp_path / f"{name}.py"
    script.write_text(examples["setup"] + "\n\n" + examples[name])
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
    assert out.splitlines() == printed


def test_the_curl_walk_through_the_lease_routes(
    readme_server: ServerProcess, tmp_path: Path
) -> None:
    block = next(b for b in shell_blocks() if "/lease" in b)
    codes = run_block(block, readme_server.base_url, tmp_path)
    assert codes == [
        200,  # acquire
        201,  # a write with the token
        409,  # a write without one
        200,  # renew
        204,  # release
    ]
