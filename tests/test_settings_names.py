"""A ``SESSION_MEMORY_*`` variable that nothing reads is a mistake, said at start-up.

``SESSION_MEMORY_DATABSE_URL`` used to be ignored without a word, and the server
served its default database. Every command now refuses to start, naming the closest
known variable. The variables the project reads that are not settings (the clients',
the tests') are listed in one place, ``config.NOT_SETTINGS``, and allowed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from session_memory.config import NOT_SETTINGS, Settings, check_database_url, unknown_variables

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("SESSION_MEMORY_DATABSE_URL", "SESSION_MEMORY_DATABASE_URL"),
        ("SESSION_MEMORY_PORTT", "SESSION_MEMORY_PORT"),
        ("SESSION_MEMORY_API_KEYS_FIEL", "SESSION_MEMORY_API_KEYS_FILE"),
        ("SESSION_MEMORY_BASEURL", "SESSION_MEMORY_BASE_URL"),
    ],
)
def test_a_misspelt_variable_names_the_closest_one(typo: str, meant: str) -> None:
    assert unknown_variables({typo: "x"}) == [f"unknown variable {typo}; did you mean {meant}?"]


def test_a_variable_like_no_other_is_refused_without_a_guess() -> None:
    (message,) = unknown_variables({"SESSION_MEMORY_XYZZY": "1"})
    assert message.startswith("unknown variable SESSION_MEMORY_XYZZY (")
    assert "did you mean" not in message


def test_settings_the_project_s_own_variables_and_others_pass() -> None:
    environ = {f"SESSION_MEMORY_{name.upper()}": "1" for name in Settings.model_fields}
    environ |= dict.fromkeys(NOT_SETTINGS, "1")
    # Settings are read regardless of case; variables of other programs are no concern.
    environ |= {"session_memory_port": "1", "PATH": "/bin", "MEMORY_PORTT": "1"}
    assert unknown_variables(environ) == []


def test_every_session_memory_variable_the_project_reads_is_known() -> None:
    """A variable read anywhere in the code, tests, CI or docs is a setting or listed."""
    places = ("app/**/*.py", "client/**/*.py", "tests/**/*.py", "client-js/src/*.ts")
    paths = [path for pattern in places for path in ROOT.glob(pattern)]
    paths += [*(ROOT / "client-js" / "test").glob("*.ts"), ROOT / ".ci" / "run"]
    name = re.compile(r"SESSION_MEMORY_[A-Z0-9_]*[A-Z0-9]")
    read = {found for path in paths for found in name.findall(path.read_text())}
    typos = {"SESSION_MEMORY_DATABSE_URL", "SESSION_MEMORY_PORTT", "SESSION_MEMORY_XYZZY"}
    typos |= {"SESSION_MEMORY_API_KEYS_FIEL", "SESSION_MEMORY_BASEURL", "SESSION_MEMORY_BASE_UR"}
    assert unknown_variables(dict.fromkeys(read - typos, "1")) == []


@pytest.mark.slow
@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["config"], ["sessions", "list"]])
def test_every_command_refuses_to_start_on_a_typo(command: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "session_memory", *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "SESSION_MEMORY_DATABSE_URL": f"sqlite:///{tmp_path}/typo.db"},
    )
    assert result.returncode == 1
    assert result.stderr == (
        "session-memory: unknown variable SESSION_MEMORY_DATABSE_URL; "
        "did you mean SESSION_MEMORY_DATABASE_URL?\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing served, nothing created


def test_a_client_variable_in_another_case_is_named() -> None:
    # The clients read SESSION_MEMORY_BASE_URL by its exact name: another case is a typo.
    assert unknown_variables({"SESSION_MEMORY_BASE_URl": "http://x"}) == [
        "unknown variable SESSION_MEMORY_BASE_URl; did you mean SESSION_MEMORY_BASE_URL?"
    ]
    assert unknown_variables({"SESSION_MEMORY_BASE_URL": "http://x"}) == []


def test_a_path_given_as_the_database_url_names_the_url() -> None:
    with pytest.raises(ValueError, match=r"write sqlite:////tmp/x\.db"):
        check_database_url("/tmp/x.db")
