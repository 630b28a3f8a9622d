"""The durability claim on SQLite: a write's WAL is fsynced before its 201 goes out.

tests/test_faults.py SIGKILLs the server under load and finds every acknowledged
batch; that proves the process keeps nothing acknowledged only in its memory, but
the OS page cache survives a killed process, so it would pass with no fsync at all
(``synchronous = NORMAL`` or ``OFF``). Power loss or a kernel crash is what an fsync
guards against, and that cannot be staged here; what can be checked is the order of
the system calls: strace the running server and require, for every acknowledged
append, a completed fsync/fdatasync of the database's WAL after the previous answer
and before this one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx2
import pytest

from tests.utils.server import ServerProcess

APPENDS = 5


def _attach(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """strace every thread of ``pid``: syncs and socket sends, with file names (-y)."""
    syscalls = "trace=fsync,fdatasync,sendto,sendmsg,write,writev"
    tracer = subprocess.Popen(
        ["strace", "-f", "-y", "-s", "16", "-o", str(out), "-p", str(pid), "-e", syscalls],
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert tracer.stderr is not None
    # "Process N attached with M threads" comes once every present thread is traced;
    # threads started later are followed by -f.
    line = tracer.stderr.readline()
    assert b"attached" in line, line
    return tracer


def test_each_acknowledged_append_follows_an_fsync_of_the_wal(tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.fail("this test needs strace (Debian package strace)")
    with ServerProcess(f"sqlite:///{tmp_path}/d.db", log_path=tmp_path / "server.log") as server:
        assert server.process is not None
        with httpx2.Client(base_url=server.base_url, timeout=30) as http:
            # Open the session and the writer's connection before tracing.
            http.post("/v1/sessions/d/items", json={"items": [{"n": -1}]}).raise_for_status()
            tracer = _attach(server.process.pid, tmp_path / "trace")
            try:
                for n in range(APPENDS):  # one at a time, so answers and syncs interleave
                    response = http.post("/v1/sessions/d/items", json={"items": [{"n": n}]})
                    assert response.status_code == 201
            finally:
                tracer.terminate()
                tracer.wait(10)
                assert tracer.stderr is not None
                tracer.stderr.close()
        assert [item["n"] for item in http_items(server.base_url)] == [-1, *range(APPENDS)]

    events = []
    pending: set[str] = set()  # threads inside a WAL sync that strace split in two
    for line in (tmp_path / "trace").read_text().splitlines():
        thread, call = line.split(maxsplit=1)
        # A sync blocks, so strace may split it: "<unfinished ...>", then "resumed>) = 0".
        # What counts is its completion (of the WAL), and the start of a send.
        if re.match(r"f(data)?sync\(\d+<.*d\.db-wal>", call):
            if call.endswith("<unfinished ...>"):
                pending.add(thread)
            elif call.endswith("= 0"):
                events.append("sync")
        elif re.match(r"<\.\.\. f(data)?sync resumed>.*= 0$", call) and thread in pending:
            pending.discard(thread)
            events.append("sync")
        elif re.match(r"(sendto|sendmsg|write|writev)\(\d+<(socket|TCP).*HTTP/1\.1 201", call):
            events.append("201")
    answers = [i for i, event in enumerate(events) if event == "201"]
    assert len(answers) == APPENDS, events
    previous = -1
    for answer in answers:
        assert "sync" in events[previous + 1 : answer], f"a 201 without a WAL fsync: {events}"
        previous = answer


def http_items(base_url: str) -> list[dict[str, int]]:
    items: list[dict[str, int]] = httpx2.get(f"{base_url}/v1/sessions/d/items").json()["items"]
    return items
