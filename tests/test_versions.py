"""One version for the three packages: the service, the Python client and the TypeScript client.

The service pins the client it speaks the wire protocol of; the TypeScript client speaks
the same protocol, so it carries the same version (and its lock file says so too).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _pyproject(path: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads(path.read_text())["project"]
    return project


def test_the_three_packages_carry_one_version() -> None:
    service = _pyproject(ROOT / "pyproject.toml")
    client = _pyproject(ROOT / "client" / "pyproject.toml")
    package = json.loads((ROOT / "client-js" / "package.json").read_text())
    lock = json.loads((ROOT / "client-js" / "package-lock.json").read_text())
    versions = {
        "session-memory": service["version"],
        "session-memory-client (Python)": client["version"],
        "session-memory-client (TypeScript)": package["version"],
        "client-js/package-lock.json": lock["version"],
        "client-js/package-lock.json (root package)": lock["packages"][""]["version"],
    }
    assert len(set(versions.values())) == 1, versions
    # The service depends on exactly this client.
    assert f"session-memory-client=={client['version']}" in service["dependencies"]
