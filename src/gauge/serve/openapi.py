"""The OpenAPI 3.1 document `gauge serve` publishes at GET /openapi.json.

It describes this server, not OpenAI's: the request schemas say exactly what
`schemas.py` accepts for the running engine and model (the `model` field is the
served id; a vLLM extra the engine does not honour may only take its neutral
value), so a client or a fuzzer can tell a valid request from one the server
refuses. Response bodies use OpenAI's own schemas, copied (with the `$ref`s
they need) from the OpenAI OpenAPI subset shipped with gauge (see openai_spec.py),
and every error is OpenAI's `ErrorResponse`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import orjson

from gauge.serve.openai_spec import SPEC_PATH, rewrite_nullable
from gauge.serve.openapi_parts import errors as _errors
from gauge.serve.openapi_parts import int_schema as _int
from gauge.serve.openapi_parts import json_ref as _json_ref
from gauge.serve.openapi_parts import nullable as _nullable
from gauge.serve.openapi_parts import ref as _ref
from gauge.serve.schemas import _CHAT, _COMPLETION, _NEUTRAL, MAX_LOGPROBS

INT64 = 2**63 - 1
"""Integers are bounded so that every valid body also parses (orjson refuses larger ones)."""

_RESPONSES = (
    "CreateChatCompletionResponse",
    "CreateCompletionResponse",
    "ListModelsResponse",
    "ErrorResponse",
)


def document(
    model: str,
    engine: str,
    honours: frozenset[str],
    secured: bool,
    routes: Iterable[str] = (),
    max_logprobs: int = MAX_LOGPROBS,
) -> dict[str, Any]:
    """The OpenAPI document for a server of `engine` serving `model`.

    `secured`: the server checks a bearer key (every route but /health).
    `routes`: the app's paths; optional operations (/tokenize, /detokenize, the
    files and batch routes) are described only when the app has them.
    """
    paths: dict[str, Any] = {
        "/v1/chat/completions": {
            "post": _generation(
                "createChatCompletion",
                "Chat completion (set stream for server-sent events).",
                "ChatCompletionRequest",
                "CreateChatCompletionResponse",
            )
        },
        "/v1/completions": {
            "post": _generation(
                "createCompletion",
                "Text completion of one or several prompts (text or token ids).",
                "CompletionRequest",
                "CreateCompletionResponse",
            )
        },
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "summary": "The served model.",
                "responses": {"200": _json_ref("ListModelsResponse", "The model list.")}
                | _errors("401"),
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Engine state and start-up timings: 200 when ready, else 503.",
                "security": [],
                "responses": {
                    "200": _json_ref("Health", "The engine is ready."),
                    "503": _json_ref("Health", "The engine is loading or failed to start."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics.",
                "responses": {
                    "200": {
                        "description": "Prometheus text format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                }
                | _errors("401"),
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    schemas = _components(model, honours, max_logprobs)
    routes = set(routes)
    if "/tokenize" in routes:
        paths["/tokenize"] = {"post": _tokenizer_op("tokenize", "Tokenize")}
        schemas["TokenizeRequest"] = _tokenize_request(model)
        schemas["TokenizeResponse"] = _TOKENIZE_RESPONSE
    if "/tokenizer_info" in routes:
        paths["/tokenizer_info"] = {"get": _TOKENIZER_INFO_OP}
        schemas["TokenizerInfoResponse"] = {
            "type": "object",
            "properties": {"tokenizer_class": {"type": "string"}},
            "required": ["tokenizer_class"],
        }
    if "/detokenize" in routes:
        paths["/detokenize"] = {"post": _tokenizer_op("detokenize", "Detokenize")}
        schemas["DetokenizeRequest"] = _detokenize_request(model)
        schemas["DetokenizeResponse"] = _DETOKENIZE_RESPONSE
    if "/v1/batches" in routes:
        from gauge.serve.openapi_batch import batch_paths, batch_schemas

        paths |= batch_paths()
        schemas |= batch_schemas()
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "gauge serve",
            "version": "1",
            "description": f"OpenAI-compatible API of the {engine} engine serving {model!r}.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def _generation(op_id: str, summary: str, request: str, response: str) -> dict[str, Any]:
    ok = _json_ref(response, "The answer (stream false).")
    # OpenAPI 3.1 has `schema` describe each server-sent event.
    ok["content"]["text/event-stream"] = {
        "schema": {
            "type": "object",
            "description": "One event: a chunk as JSON in `data`, then `data: [DONE]`.",
            "properties": {"data": {"type": "string", "contentMediaType": "application/json"}},
            "required": ["data"],
        }
    }
    return {
        "operationId": op_id,
        "summary": summary,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(request)}},
        },
        "responses": {"200": ok} | _errors("400", "401", "404", "429", "503"),
    }


# -- schemas ------------------------------------------------------------------------------


def _components(model: str, honours: frozenset[str], max_logprobs: int) -> dict[str, Any]:
    schemas = dict(_openai_responses())
    fields = _fields(model, honours, max_logprobs)
    schemas["ChatCompletionRequest"] = _chat(fields, honours)
    schemas["CompletionRequest"] = _completion(fields, honours)
    schemas["Health"] = _HEALTH
    return schemas


_IGNORED: dict[str, Any] = {"description": "Accepted, any value: it cannot change the output."}
_FALSY: dict[str, Any] = {
    "description": "Not supported: only an empty or null value is accepted.",
    "anyOf": [
        {"type": "null"},
        {"const": ""},
        {"const": False},
        {"type": "number", "const": 0},
        {"type": "array", "maxItems": 0},
        {"type": "object", "maxProperties": 0},
    ],
}
_NOT_TRUE: dict[str, Any] = {"enum": [None, False]}


def _fields(model: str, honours: frozenset[str], max_logprobs: int) -> dict[str, Any]:
    """Every request field either route takes, as schemas.py checks it."""
    props: dict[str, Any] = {
        "model": {"type": "string", "enum": [model], "description": "The id GET /v1/models lists."},
        # The floor is 1 unless the prompt is scored (see the rules in _chat/_completion).
        "max_tokens": _nullable(_int(0 if _scores(honours) else 1)),
        "max_completion_tokens": _nullable(_int(0 if _scores(honours) else 1)),
        "temperature": _nullable({"type": "number", "minimum": 0, "maximum": 2}),
        "top_p": _nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
        "n": _nullable(_int(1, 128)),
        "stop": _nullable(
            {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "maxItems": 16},
                ]
            }
        ),
        "seed": _nullable(_int()),
        "stream": _nullable({"type": "boolean"}),
        "stream_options": _nullable(
            {"type": "object", "description": "include_usage (truthy): a last usage chunk."}
        ),
        "prompt": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                _TOKEN_IDS,
                {"type": "array", "items": _TOKEN_IDS, "minItems": 1},
            ]
        },
        "suffix": _FALSY | {"description": "Suffix insertion is not supported."},
        # a string is the prompt itself, untemplated (vLLM's first chat API)
        "messages": {"anyOf": [_MESSAGES, {"type": "string", "minLength": 1}]},
        "top_logprobs": _nullable(_int(0, max_logprobs)),
        "tools": _FALSY,
        "tool_choice": {"enum": [None, "none", "auto"]},
        "response_format": _nullable(
            {"type": "object", "properties": {"type": {"const": "text"}}, "required": ["type"]}
        ),
    }
    for name in ("user", "store", "metadata", "service_tier", "parallel_tool_calls"):
        props[name] = _IGNORED
    for name, neutral in _NEUTRAL.items():
        props[name] = _extra(name, max_logprobs) if name in honours else _neutral(neutral)
    if "best_of" not in honours and "use_beam_search" not in honours:
        # best_of == n is plain sampling; 1 is the one we can state (beams: the width)
        props["best_of"] = _nullable({"type": "integer", "const": 1})
    return props


def _shared_rules(honours: frozenset[str]) -> list[dict[str, Any]]:
    if "best_of" in honours:
        return []
    one = {"anyOf": [{"type": "null"}, {"type": "integer", "const": 1}]}
    rule = {"if": _present("best_of", {"type": "integer"}), "then": {"properties": {"n": one}}}
    if "use_beam_search" in honours:  # without beam search, best_of must be n (here 1)
        rule["then"]["properties"]["best_of"] = one
        rule = {"if": {"not": _present("use_beam_search", {"const": True})}, "then": rule}
    return [rule]


def _scores(honours: frozenset[str]) -> bool:
    """The engine can score prompts, so max_tokens 0 can be valid."""
    return "prompt_logprobs" in honours or "echo" in honours


def _extra(name: str, max_logprobs: int) -> dict[str, Any]:
    """A vLLM extra the engine honours: its full range."""
    ranges: dict[str, dict[str, Any]] = {
        "best_of": _nullable(_int(1, 128)),
        "top_k": _nullable(_int(-1)),
        "min_p": _nullable({"type": "number", "minimum": 0, "maximum": 1}),
        "repetition_penalty": _nullable({"type": "number", "exclusiveMinimum": 0}),
        "length_penalty": _nullable({"type": "number"}),
        "early_stopping": _nullable({"anyOf": [{"type": "boolean"}, {"const": "never"}]}),
        "stop_token_ids": _nullable({"type": "array", "items": _int(0)}),
        "presence_penalty": _nullable({"type": "number", "minimum": -2, "maximum": 2}),
        "frequency_penalty": _nullable({"type": "number", "minimum": -2, "maximum": 2}),
        "logit_bias": _nullable(
            {
                "type": "object",
                "propertyNames": {"pattern": "^[0-9]{1,9}$"},
                "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
            }
        ),
        "prompt_logprobs": _nullable(_int(0, max_logprobs)),
    }
    return ranges.get(name, _nullable({"type": "boolean"}))


def _neutral(values: tuple[Any, ...]) -> dict[str, Any]:
    """A vLLM extra the engine does not honour: only its neutral values."""
    options: list[dict[str, Any]] = [{"type": "null"}]
    for value in values:
        if value == []:
            options.append({"type": "array", "maxItems": 0})
        elif value == {}:
            options.append({"type": "object", "maxProperties": 0})
        elif isinstance(value, bool):
            options.append({"const": value})
        elif isinstance(value, int | float):
            options.append({"type": "number", "const": value})
    return {"anyOf": options, "description": "Not honoured by this engine: neutral values only."}


_TOKEN_IDS = {"type": "array", "items": _int(0), "minItems": 1}
_TEXT_PART = {
    "type": "object",
    "properties": {"type": {"const": "text"}, "text": {"description": "Any value, as text."}},
    "required": ["type"],
}
_MESSAGE = {
    "type": "object",
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": _nullable(
            {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]}
        ),
        "name": _IGNORED,
        "tool_call_id": _IGNORED,
        "tool_calls": _IGNORED,
    },
    "required": ["role"],
    # Each is read only on its role: tool_call_id on tool, tool_calls (refused) on assistant.
    "allOf": [
        {
            "if": {"properties": {"role": {"const": "tool"}}},
            "then": {"properties": {"tool_call_id": _nullable({"type": "string"})}},
        },
        {
            "if": {"properties": {"role": {"const": "assistant"}}},
            "then": {"properties": {"tool_calls": _FALSY}},
        },
    ],
}

_MESSAGES = {"type": "array", "items": _MESSAGE, "minItems": 1}


def _present(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A condition: `name` is in the body and matches `schema`."""
    return {"properties": {name: schema}, "required": [name]}


def _request(
    description: str,
    fields: dict[str, Any],
    allowed: frozenset[str],
    required: list[str],
    rules: list[dict[str, Any]],
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "description": description,
        "properties": {k: v for k, v in fields.items() if k in allowed},
        "required": required,
        "additionalProperties": False,
    }
    if rules:
        schema["allOf"] = rules
    return schema


def _chat(fields: dict[str, Any], honours: frozenset[str]) -> dict[str, Any]:
    rules = [
        *_shared_rules(honours),
        {  # top_logprobs needs logprobs: true
            "if": _present("top_logprobs", {"type": "integer"}),
            "then": _present("logprobs", {"const": True}),
        },
    ]
    logprobs = {"logprobs": _nullable({"type": "boolean"})}
    if "prompt_logprobs" in honours:
        scored = _present("prompt_logprobs", {"type": "integer"})
        at_least_one = _nullable(_int(1))
        rules.append(
            {
                "if": scored,
                "then": {"properties": {"stream": _NOT_TRUE}},
                "else": {
                    "properties": {
                        "max_tokens": at_least_one,
                        "max_completion_tokens": at_least_one,
                    }
                },
            }
        )
    elif _scores(honours):
        at_least_one = _nullable(_int(1))
        rules.append(
            {"properties": {"max_tokens": at_least_one, "max_completion_tokens": at_least_one}}
        )
    if "continue_final_message" in honours:
        rules.append(
            {
                "if": _present("continue_final_message", {"const": True}),
                "then": {"properties": {"add_generation_prompt": _NOT_TRUE}},
            }
        )
    return _request(
        "OpenAI's chat request as this server takes it (text only, no tools).",
        fields | logprobs,
        _CHAT,
        ["model", "messages"],
        rules,
    )


def _completion(fields: dict[str, Any], honours: frozenset[str]) -> dict[str, Any]:
    rules = _shared_rules(honours)
    echo = _present("echo", {"const": True})
    if _scores(honours):  # max_tokens 0 scores the prompt, which needs echo
        rules.append({"if": echo, "else": {"properties": {"max_tokens": _nullable(_int(1))}}})
    if "echo" in honours:
        # echo with logprobs returns the prompt's logprobs: the engine must compute them,
        # and they are not streamed.
        then = (
            {"properties": {"stream": _NOT_TRUE}}
            if "prompt_logprobs" in honours
            else {"properties": {"logprobs": {"type": "null"}}}
        )
        rules.append(
            {"if": {"allOf": [echo, _present("logprobs", {"type": "integer"})]}, "then": then}
        )
    if "prompt_logprobs" in honours:
        rules.append(
            {
                "if": _present("prompt_logprobs", {"type": "integer"}),
                "then": {"properties": {"stream": _NOT_TRUE}},
            }
        )
    logprobs = {"logprobs": fields["top_logprobs"]}
    return _request(
        "OpenAI's text completion request as this server takes it.",
        fields | logprobs | {"max_tokens": fields["max_tokens"]},
        _COMPLETION,
        ["model", "prompt"],
        rules,
    )


_HEALTH: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"enum": ["loading", "warming_up", "ready", "failed"]},
        "engine": {"type": "string"},
        "model": {"type": "string"},
        "phases": {
            "type": "object",
            "properties": {
                "load": {"type": ["number", "null"]},
                "warmup": {"type": ["number", "null"]},
            },
            "required": ["load", "warmup"],
        },
        "running": {"type": "integer", "minimum": 0},
        "max_concurrency": {"type": "integer", "minimum": 1},
        "error": {"type": "string"},
    },
    "required": ["status", "engine", "model", "phases", "running", "max_concurrency"],
}

# -- /tokenize and /detokenize (vLLM's) ----------------------------------------------------


def _tokenizer_op(op_id: str, name: str) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "summary": f"{name} with the engine's tokenizer, as vLLM's server does.",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(f"{name}Request")}},
        },
        "responses": {"200": _json_ref(f"{name}Response", "The answer.")}
        | _errors("400", "401", "404", "503"),
    }


def _tokenize_request(model: str) -> dict[str, Any]:
    boolean = _nullable({"type": "boolean"})
    common = {"model": _nullable({"type": "string", "enum": [model]}), "return_token_strs": boolean}
    text = {
        "type": "object",
        "properties": common | {"prompt": {"type": "string"}, "add_special_tokens": boolean},
        "required": ["prompt"],
        "additionalProperties": False,
    }
    chat = {
        "type": "object",
        "properties": common
        | {
            "messages": _MESSAGES,
            "add_generation_prompt": boolean,
            "continue_final_message": boolean,
            "add_special_tokens": boolean,
        },
        "required": ["messages"],
        "additionalProperties": False,
        "if": _present("continue_final_message", {"const": True}),
        "then": {"properties": {"add_generation_prompt": _NOT_TRUE}},
    }
    # A body with messages is a chat; anything else is a text prompt.
    return {"if": {"required": ["messages"]}, "then": chat, "else": text}


def _detokenize_request(model: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "model": _nullable({"type": "string", "enum": [model]}),
            "tokens": {"type": "array", "items": _int(0)},
        },
        "required": ["tokens"],
        "additionalProperties": False,
    }


_TOKENIZE_RESPONSE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "minimum": 0},
        "max_model_len": {"type": ["integer", "null"]},
        "tokens": {"type": "array", "items": {"type": "integer"}},
        "token_strs": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["count", "max_model_len", "tokens"],
}
_TOKENIZER_INFO_OP: dict[str, Any] = {
    "operationId": "tokenizer_info",
    "summary": "The tokenizer's configuration (class, special tokens, chat template), as vLLM's.",
    "responses": {"200": _json_ref("TokenizerInfoResponse", "The tokenizer's configuration.")}
    | _errors("401", "503"),
}
_DETOKENIZE_RESPONSE: dict[str, Any] = {
    "type": "object",
    "properties": {"prompt": {"type": "string"}},
    "required": ["prompt"],
}


@functools.cache
def _openai_responses() -> dict[str, Any]:
    """The response schemas from OpenAI's spec, with every schema they reference."""
    spec = orjson.loads(SPEC_PATH.read_bytes())
    schemas = spec["components"]["schemas"]
    wanted: dict[str, Any] = {}
    todo = list(_RESPONSES)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted[name] = rewrite_nullable(schemas[name])
        todo.extend(_refs(wanted[name]))
    _allow_unscored_first_token(wanted["CreateCompletionResponse"])
    return wanted


def _allow_unscored_first_token(completion: dict[str, Any]) -> None:
    """vLLM's echo with logprobs: the prompt's first token has no logprob (null), as in vLLM."""
    choice = completion["properties"]["choices"]["items"]["properties"]
    logprobs = choice["logprobs"]["anyOf"][0]["properties"]
    logprobs["token_logprobs"]["items"] = {"type": ["number", "null"]}
    logprobs["top_logprobs"]["items"] = _nullable(logprobs["top_logprobs"]["items"])


def _refs(node: Any) -> list[str]:
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    if not isinstance(node, dict):
        return []
    found = [r for value in node.values() for r in _refs(value)]
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        found.append(ref.rsplit("/", 1)[1])
    return found
