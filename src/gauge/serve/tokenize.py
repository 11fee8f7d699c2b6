"""POST /tokenize and POST /detokenize, as vLLM's server has them.

    POST /tokenize    {"model"?, "prompt", "add_special_tokens"?: true, "return_token_strs"?}
                      {"model"?, "messages", "add_generation_prompt"?: true,
                       "continue_final_message"?: false, "add_special_tokens"?,
                       "return_token_strs"?}
                      -> {"count": n, "max_model_len": m, "tokens": [...],
                          "token_strs"?: [...]}
    POST /detokenize  {"model"?, "tokens": [...]} -> {"prompt": "..."}
    GET /tokenizer_info  -> {"tokenizer_class", "bos_token"?, "eos_token"?, "pad_token"?,
                             "chat_template"?, "model_max_length"?, ...}

Messages are templated exactly as a chat request with the same fields would be
(by default a chat template holds its own special tokens, as in vLLM), so a
client tokenizes the way the server scores: the ids /tokenize returns, sent
back as a completions prompt, are the ids that get scored. Bad bodies are a 400
in OpenAI's error shape naming the field.
"""

from __future__ import annotations

from typing import Any

from gauge.errors import ConfigError, ModelError, one_line
from gauge.serve.engines.base import Engine, TokenizeRequest
from gauge.serve.schemas import APIError, _is_token, bad, chat_messages, flag

TOKENIZE_ROUTE = "/tokenize"
DETOKENIZE_ROUTE = "/detokenize"
TOKENIZER_INFO_ROUTE = "/tokenizer_info"

_TOKENIZE_TEXT = frozenset({"model", "prompt", "add_special_tokens", "return_token_strs"})
_TOKENIZE_CHAT = frozenset(
    {
        "model",
        "messages",
        "add_generation_prompt",
        "continue_final_message",
        "add_special_tokens",
        "return_token_strs",
    }
)


def parse_tokenize(body: Any) -> tuple[str | None, TokenizeRequest, bool]:
    """(model, request, return_token_strs) from a /tokenize body."""
    body = _object(body)
    if "messages" in body:
        _known(body, _TOKENIZE_CHAT)
        continue_final = flag(body, "continue_final_message", False)
        add_generation_prompt = flag(body, "add_generation_prompt", not continue_final)
        if continue_final and add_generation_prompt:
            raise bad(
                "continue_final_message",
                "cannot be used with add_generation_prompt: true; drop one of them",
            )
        special = body.get("add_special_tokens")
        request = TokenizeRequest(
            messages=chat_messages(body.get("messages")),
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final,
            add_special_tokens=None if special is None else flag(body, "add_special_tokens", False),
        )
    else:
        _known(body, _TOKENIZE_TEXT)
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise bad("prompt", "must be a string (or send messages instead)")
        request = TokenizeRequest(
            prompt=prompt, add_special_tokens=flag(body, "add_special_tokens", True)
        )
    return _model(body), request, flag(body, "return_token_strs", False)


def parse_detokenize(body: Any) -> tuple[str | None, list[int]]:
    """(model, token ids) from a /detokenize body."""
    body = _object(body)
    _known(body, frozenset({"model", "tokens"}))
    tokens = body.get("tokens")
    # _is_token as for prompts: 2.0 is a token id too (JSON Schema counts it an integer)
    if not isinstance(tokens, list) or not all(_is_token(t) for t in tokens):
        raise bad("tokens", "must be a list of token ids (integers >= 0)")
    return _model(body), [int(t) for t in tokens]


async def answer(engine: Engine, served: str, route: str, body: Any) -> dict[str, Any]:
    """The response body of one /tokenize, /detokenize or /tokenizer_info request.

    `served` is the served model id; `body` the parsed JSON body (None for GET
    /tokenizer_info). Authentication, readiness and metrics are the server's
    (`gauge.serve.app.Server.tokenizer`); a bad body or an engine's refusal is an APIError.
    """
    try:
        return await _run(engine, served, route, body)
    except (ConfigError, ModelError) as ex:
        raise APIError(one_line(ex)) from ex


async def _run(engine: Engine, served: str, route: str, body: Any) -> dict[str, Any]:
    if route == TOKENIZER_INFO_ROUTE:
        return await engine.tokenizer_info()
    if route == TOKENIZE_ROUTE:
        model, tokenize, strs = parse_tokenize(body)
        _check_model(served, model)
        ids = await engine.tokenize(tokenize)
        data: dict[str, Any] = {
            "count": len(ids),
            "max_model_len": engine.max_model_len,
            "tokens": ids,
        }
        if strs:
            data["token_strs"] = await engine.token_texts(ids)
        return data
    model, ids = parse_detokenize(body)
    _check_model(served, model)
    return {"prompt": await engine.detokenize(ids)}


def _check_model(served: str, model: str | None) -> None:
    if model is not None and model != served:
        raise APIError(
            f"the model {model!r} does not exist; this server serves {served!r}",
            404,
            param="model",
            code="model_not_found",
        )


def _model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad("model", "must be a string: the id listed by GET /v1/models")
    return model


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise APIError("the request body must be a JSON object")
    return body


def _known(body: dict[str, Any], allowed: frozenset[str]) -> None:
    for key in body:
        if key not in allowed:
            raise bad(key, "is not a field this endpoint takes; remove it")
