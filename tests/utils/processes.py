"""Start test processes in their own process group and end the whole group.

Every process a test starts goes through :func:`spawn`, which puts it in a new
session (its own process group), so killing the group also ends what it started
(``--workers`` children, multiprocessing's resource tracker). :func:`leftovers`
is what the session-wide check in ``conftest.py`` looks at.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["end_group", "group_members", "leftovers", "spawn"]

# Process groups started by this test process, to check at the end of the run.
_GROUPS: set[int] = set()


def spawn(command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` in a new session, remembered for the leftover check."""
    process: subprocess.Popen[Any] = subprocess.Popen(command, start_new_session=True, **kwargs)
    _GROUPS.add(process.pid)
    return process


def end_group(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGKILL whatever is left of the process's group and reap the leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)


def _stat(pid_dir: Path) -> tuple[int, int] | None:
    """(parent pid, process group) of a /proc entry, or None if it is gone or a zombie."""
    try:
        fields = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[2])


def leftovers() -> list[str]:
    """Live processes that are children of this one or in a group a test started."""
    me = os.getpid()
    found = []
    for pid_dir in Path("/proc").glob("[0-9]*"):
        stat = _stat(pid_dir)
        if stat is None or int(pid_dir.name) == me:
            continue
        parent, group = stat
        if parent == me or group in _GROUPS:
            try:
                cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            # multiprocessing's resource tracker for this process (started by the
            # spawn pools of the concurrency tests) belongs to the interpreter and
            # ends with it; a tracker inside a test's group is still reported.
            if parent == me and group not in _GROUPS and "resource_tracker" in cmdline:
                continue
            found.append(f"{pid_dir.name}: {cmdline.strip()[:200]}")
    return found


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes in process group ``group``."""
    return [
        int(pid_dir.name)
        for pid_dir in Path("/proc").glob("[0-9]*")
        if (stat := _stat(pid_dir)) is not None and stat[1] == group
    ]
