"""gauge serve under a fuzzer: its OpenAPI document, schemathesis, malformed requests.

The long run is `scripts/fuzz_serve.py --max-examples 500`; here it runs small
and seeded. The regressions at the end are what the fuzzer found.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("schemathesis")

from gauge.serve.engines.base import BASIC_FIELDS
from gauge.serve.engines.mock import MockEngine
from gauge.serve.openapi import document
from gauge.serve.schemas import _NEUTRAL
from gauge.serve.settings import Settings

SCRIPT = Path(__file__).parents[2] / "scripts" / "fuzz_serve.py"
FUZZ = runpy.run_path(str(SCRIPT))
KEY = FUZZ["KEY"]


def get(server: Any, path: str, key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    status, data = FUZZ["request"](server.root + path, "GET", None, headers)
    return status, json.loads(data)


def post(server: Any, path: str, body: Any) -> tuple[int, Any]:
    raw = json.dumps(body).encode()
    status, data = FUZZ["request"](
        server.root + path, "POST", raw, {"Content-Type": "application/json"}
    )
    return status, json.loads(data)


def test_document_is_valid_openapi_and_covers_every_route(serve: Any) -> None:
    import jsonschema
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    server = serve()
    status, doc = get(server, "/openapi.json")
    assert status == 200
    OPENAPI_31_VALIDATOR.validate(doc)
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    routes = {r.path for r in server.app.routes}
    assert routes <= set(doc["paths"])
    assert "security" not in doc  # no key: nothing to send
    chat = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert chat["model"]["enum"] == ["mock-model"]


def test_document_with_a_key_declares_bearer_auth_but_not_on_health(serve: Any) -> None:
    server = serve(api_key="k1")
    status, doc = get(server, "/openapi.json")  # open, like /health
    assert status == 200
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert "401" in doc["paths"]["/v1/chat/completions"]["post"]["responses"]


@pytest.mark.parametrize("engine", ["transformers", "vllm", "mock"])
def test_document_is_valid_for_every_engine(engine: str) -> None:
    import jsonschema
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    from gauge.serve.engines import engine_class

    honours = engine_class(engine).honours  # the class only: no model is loaded
    doc = document("m", engine, honours, secured=True, routes=["/tokenize", "/detokenize"])
    OPENAPI_31_VALIDATOR.validate(doc)
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    assert {"/tokenize", "/detokenize"} <= set(doc["paths"])


def test_document_follows_what_the_engine_honours() -> None:
    import jsonschema

    mock = document("m", "mock", BASIC_FIELDS, secured=False)
    wide = document("m", "transformers", BASIC_FIELDS | {"top_k", "min_p"}, secured=False)

    def accepts(doc: dict[str, Any], body: dict[str, Any]) -> bool:
        schema = {"$ref": "#/components/schemas/ChatCompletionRequest"} | {
            "components": doc["components"]
        }
        return jsonschema.Draft202012Validator(schema).is_valid(body)

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert accepts(mock, body) and accepts(wide, body)
    assert not accepts(mock, body | {"top_k": 5})  # not honoured: neutral values only
    assert accepts(mock, body | {"top_k": -1})
    assert accepts(wide, body | {"top_k": 5})
    assert not accepts(wide, body | {"top_k": -2})
    assert not accepts(mock, body | {"model": "other"})
    assert not accepts(mock, body | {"top_logprobs": 2})  # needs logprobs: true
    assert accepts(mock, body | {"top_logprobs": 2, "logprobs": True})
    assert not accepts(mock, body | {"temprature": 0})
    # every field the parser knows is described
    props = mock["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert set(_NEUTRAL) <= set(props)


def test_schemathesis_finds_no_failure_and_malformed_requests_get_openai_errors() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--max-examples", "15", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    result = json.loads(last.removeprefix("RESULT "))
    assert result["schemathesis_exit"] == 0
    assert result["schemathesis_cases"] > 300
    assert result["malformed_cases"] == len(FUZZ["MALFORMED"])
    assert result["malformed_failures"] == 0
    assert result["server_alive_after"] is True


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[Any]:
    """One mock-engine server with the fuzz key, shared by the malformed-request cases."""
    # by path: `import conftest` could find tests/conftest.py instead
    server_thread = runpy.run_path(str(Path(__file__).with_name("conftest.py")))["ServerThread"]
    settings = Settings(
        engine="mock",
        model_name="mock-model",
        api_key=KEY,
        disable_log_stats=True,
        disable_log_requests=True,
    )
    server = server_thread(MockEngine("mock-model"), settings).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "headers", "want"),
    FUZZ["MALFORMED"],
    ids=[case[0] for case in FUZZ["MALFORMED"]],
)
def test_malformed_request(
    keyed_server: Any,
    name: str,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    want: int,
) -> None:
    status, data = FUZZ["request"](keyed_server.root + path, method, body, headers)
    assert status == want, data
    assert FUZZ["error_shape_problem"](data) is None


# -- what the fuzzer found (fixed in gauge/serve/schemas.py and app.py) ------------------

CHAT = "/v1/chat/completions"
HI = [{"role": "user", "content": "hi"}]


def test_non_string_tool_call_id_is_a_400_not_a_500(serve: Any) -> None:
    messages = [{"role": "tool", "content": "x", "tool_call_id": {}}]
    status, body = post(serve(), CHAT, {"model": "mock-model", "messages": messages})
    assert status == 400
    assert body["error"]["param"] == "messages[0].tool_call_id"


def test_whole_floats_are_integers_as_in_json_schema(serve: Any) -> None:
    body = {"model": "mock-model", "messages": HI, "n": 2.0, "max_tokens": 3.0}
    status, reply = post(serve(), CHAT, body)
    assert status == 200, reply
    assert len(reply["choices"]) == 2
    status, reply = post(serve(), CHAT, body | {"n": 2.5})
    assert (status, reply["error"]["message"]) == (400, "n: must be an integer")


def test_neutral_values_match_by_type(serve: Any) -> None:
    server = serve()
    # 0 == False in Python, but 0 is not false on the wire
    status, reply = post(server, CHAT, {"model": "mock-model", "messages": HI, "early_stopping": 0})
    assert status == 400
    assert reply["error"]["message"] == (
        "early_stopping: is not supported by the mock engine; remove it or send false"
    )
    status, _ = post(server, CHAT, {"model": "mock-model", "messages": HI, "early_stopping": False})
    assert status == 200


def test_max_tokens_is_checked_even_beside_max_completion_tokens(serve: Any) -> None:
    body = {"model": "mock-model", "messages": HI, "max_completion_tokens": 4, "max_tokens": "x"}
    status, reply = post(serve(), CHAT, body)
    assert (status, reply["error"]["param"]) == (400, "max_tokens")
