"""schemathesis against the committed openapi.json, over TCP to a real server.

Every operation, a bounded number of generated requests each: no 5xx, and every
response (status, content type, body) matches the spec.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow  # real processes over TCP

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = schemathesis.openapi.from_path(ROOT / "openapi.json")
KEY = "fuzz-key-0123456789"
# The live follow stream never ends by itself, so it cannot be called per example;
# its parameters are checked in test_history_api.
OPERATIONS = [
    op
    for op in (result.ok() for result in SCHEMA.get_all_operations())
    if not op.path.endswith("/events")
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    with ServerProcess(
        f"sqlite:///{folder}/f.db",
        log_path=folder / "server.log",
        # Generated acquisitions of a leased session would each wait the default 30 s.
        env={
            "SESSION_MEMORY_API_KEYS": f"fuzz:{KEY}",
            "SESSION_MEMORY_MAX_LEASE_WAIT_SECONDS": "0.2",
        },
    ) as server:
        yield server


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_every_operation_answers_per_spec(
    fuzz_server: ServerProcess, operation: schemathesis.APIOperation
) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        if case.headers and "Idempotency-Key" in case.headers:
            # Generated keys repeat across different requests, which is a 422 by design
            # (tested on its own); a fresh key keeps each generated request valid.
            case.headers["Idempotency-Key"] = str(uuid.uuid4())
        # A valid If-Match may still not match the session: 412 is a right answer then.
        # A listing cursor is opaque: only one a listing gave out is valid, which the
        # schema's pattern cannot say, so another is a right 422.
        conditional = bool(case.headers and "If-Match" in case.headers)
        opaque = bool(case.query and "cursor" in case.query)
        # known= goes with limit alone: with after or before it is a right 422, which
        # a schema of independent parameters cannot say.
        opaque |= bool(
            case.query and "known" in case.query and {"after", "before"} & set(case.query)
        )
        if case.headers and "Session-Metadata" in case.headers:
            # A JSON object in a header: more than a string schema can say.
            case.headers["Session-Metadata"] = '{"fuzz": true}'
        # Metadata strings holding U+0000 or a lone surrogate cannot be stored: a right
        # 422 that a schema of "any object" cannot say either.
        unstorable = case.method == "PATCH" and bool(
            re.search(r"\\u0000|[\ud800-\udfff]", json.dumps(case.body, ensure_ascii=False))
        )
        case.call_and_validate(
            base_url=fuzz_server.base_url,
            headers={"Authorization": f"Bearer {KEY}"},
            excluded_checks=[schemathesis.checks.positive_data_acceptance]
            if conditional or opaque or unstorable
            else [],
        )

    check()
