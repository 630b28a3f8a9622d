"""Fresh virtual environments for install tests, and commands run in them.

Slow by nature, so each test module makes its environment once; pip's own cache
(and the configured indexes) serve the dependencies, so nothing is downloaded twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

__all__ = ["ROOT", "copy_sources", "fresh_venv", "pip_install", "pip_list", "run"]

ROOT = Path(__file__).resolve().parent.parent.parent


def run(
    *command: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; with ``check``, a failure shows its output."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def fresh_venv(env_dir: Path) -> Path:
    """A new virtual environment with pip and nothing else; returns its Python."""
    venv.create(env_dir, with_pip=True)
    return env_dir / "bin" / "python"


def pip_install(python: Path, *requirements: str | Path, cwd: Path | None = None) -> None:
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements,
        cwd=cwd)  # fmt: skip


def pip_list(python: Path) -> dict[str, str]:
    """Installed distributions, by normalised name, with their versions."""
    listed = run(
        python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"
    ).stdout
    return {
        name.lower().replace("_", "-"): version
        for name, _, version in (line.partition("==") for line in listed.splitlines())
    }


def copy_sources(target: Path) -> Path:
    """The files a clone installs from (what the Dockerfile copies too), in ``target``.

    Installed from a copy, so a build writes its ``build/`` and ``*.egg-info`` there,
    never into the repository (where other tests may be reading).
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for folder in ("app", "client"):
        shutil.copytree(ROOT / folder, target / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    return target
