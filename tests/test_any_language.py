"""The curl examples of the README and docs/, run as written against a fresh server:
each answers as the docs say, so any language that speaks HTTP can follow them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.utils.docs import ROOT, CodeBlock, code_blocks
from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow  # real processes over TCP


def shell_blocks() -> list[CodeBlock]:
    return code_blocks("sh")


def the_block(predicate_name: str, blocks: list[CodeBlock]) -> CodeBlock:
    assert len(blocks) == 1, f"one block {predicate_name} in the docs, found {len(blocks)}"
    return blocks[0]


def run_block(block: str, base_url: str, tmp_path: Path) -> list[int]:
    """Run ``block`` with bash; return the HTTP status of each curl call, in order."""
    codes = tmp_path / "codes"
    # Every curl call also writes its status code to a file, whatever its output does.
    script = (
        "set -euo pipefail\n"
        f"curl() {{ command curl -w '%{{stderr}}%{{http_code}}\\n' \"$@\" 2>>'{codes}'; }}\n"
        + block.replace("B=http://127.0.0.1:8000", f"B={base_url}")
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return [int(line) for line in codes.read_text().split()]


def test_readme_api_examples(tmp_path: Path) -> None:
    block = the_block(
        "starting with B=",
        [b for b in shell_blocks() if b.text.startswith("B=http://127.0.0.1:8000")],
    )
    assert block.path == ROOT / "docs" / "api.md"
    with ServerProcess(f"sqlite:///{tmp_path}/r.db", log_path=tmp_path / "log") as server:
        codes = run_block(block.text, server.base_url, tmp_path)
    assert codes == [
        201,  # append two items
        200,  # read all
        200,  # the latest one
        200,  # before=2
        200,  # after=1
        200,  # pop
        200,  # the session's record
        200,  # list sessions
        204,  # clear
        201,  # append with an Idempotency-Key
        200,  # pop with an Idempotency-Key
        200,  # read, to see the ETag
        412,  # a write with an If-Match that is not the session's revision
        201,  # append with a Session-TTL
        200,  # replace the whole history
        200,  # replace from a seq
        201,  # fork
        201,  # append with Session-Metadata
        200,  # patch the metadata
        200,  # list by metadata
        200,  # list by prefix
        200,  # follow for a second
        200,  # /healthz
        200,  # /readyz
    ]


def test_readme_operations_examples(tmp_path: Path) -> None:
    block = the_block("reading /metrics", [b for b in shell_blocks() if "/metrics" in b.text])
    assert block.path == ROOT / "docs" / "operations.md"
    with ServerProcess(f"sqlite:///{tmp_path}/o.db", log_path=tmp_path / "log") as server:
        text = f"B={server.base_url}\n" + block.text
        codes = run_block(text, server.base_url, tmp_path)
    assert codes == [200, 200]


def test_the_docker_examples_are_found() -> None:
    # The parametrised test below would pass with nothing to check.
    assert [b for b in shell_blocks() if "docker" in b.text]


@pytest.mark.parametrize("block", [b.text for b in shell_blocks() if "docker" in b.text])
def test_docker_examples_name_the_real_files(block: str) -> None:
    # No Docker engine here: check what the examples rely on exists.
    assert (ROOT / "Dockerfile").exists()
    if "compose" in block:
        assert (ROOT / "compose.yaml").exists()
