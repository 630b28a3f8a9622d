"""The committed openapi.json is the app's spec, and the spec says what the routes do."""

from __future__ import annotations

import json
from pathlib import Path

from session_memory.main import openapi_spec

ROOT = Path(__file__).resolve().parent.parent


def test_committed_spec_matches_the_app() -> None:
    committed = json.loads((ROOT / "openapi.json").read_text())
    assert committed == openapi_spec(), "openapi.json is stale: run `make openapi`"


def test_every_error_response_is_problem_json() -> None:
    spec = openapi_spec()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], (
                        method,
                        path,
                        status,
                    )


def test_append_documents_its_request_body() -> None:
    operation = openapi_spec()["paths"]["/v1/sessions/{session_id}/items"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["items"]
    assert schema["properties"]["items"]["items"]["type"] == "object"
