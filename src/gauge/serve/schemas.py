"""Request bodies -> `EngineRequest`s, or an `APIError` naming the offending field.

Every field of OpenAI's chat and text completion requests, and vLLM's extras,
is either mapped, accepted because it cannot change the output (`user`,
`stream_options`, ...), or refused with HTTP 400 in OpenAI's error shape:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "top_k", "code": null}}

A vLLM extra that is set to anything but its neutral value is refused when the
engine does not list it in `Engine.honours`: nothing is silently ignored.

Defaults: an unset temperature is greedy (the hf provider's evaluation default,
and what the bundled model's generation config asks for); completions default
to max_tokens 16, as OpenAI and vLLM do.

Prompt logprobs (scoring): completions with `echo: true` and `logprobs: k` return
the prompt's tokens with their logprobs ahead of the generated ones, and
`max_tokens: 0` scores without generating (vLLM's behaviour); vLLM's
`prompt_logprobs: k` works on both routes. Chat also takes vLLM's
`continue_final_message`, so a client can score an assistant message it wrote.
Prompt logprobs are not streamed: such a request with `stream: true` is a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gauge.model.messages import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
)
from gauge.serve.engines.base import EngineRequest, SamplingParams

COMPLETION_DEFAULT_MAX_TOKENS = 16
MAX_LOGPROBS = 20

# Accepted, and cannot change the generated text.
_HARMLESS = frozenset({"user", "stream_options", "store", "metadata", "service_tier"})
# vLLM extras and their neutral values (a value in the tuple means "off").
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "best_of": (None,),
    "top_k": (None, -1, 0),
    "min_p": (None, 0, 0.0),
    "repetition_penalty": (None, 1, 1.0),
    "length_penalty": (None, 1, 1.0),
    "use_beam_search": (None, False),
    "early_stopping": (None, False),
    "ignore_eos": (None, False),
    "stop_token_ids": (None, []),
    "skip_special_tokens": (None, True),
    "spaces_between_special_tokens": (None, True),
    "add_generation_prompt": (None, True),
    "include_stop_str_in_output": (None, False),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "echo": (None, False),
    "prompt_logprobs": (None,),
    "continue_final_message": (None, False),
}
_COMMON = frozenset(
    {"model", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream", "logprobs"}
    | _NEUTRAL.keys()
    | _HARMLESS
)
_CHAT = _COMMON | {
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
}
_COMPLETION = (_COMMON - {"add_generation_prompt", "continue_final_message"}) | {
    "prompt",
    "suffix",
}


class APIError(Exception):
    """A request the server refuses, in OpenAI's error shape."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        param: str | None = None,
        type: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.type = type
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI sends for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(slots=True)
class Parsed:
    """One parsed request: the engine requests (one per prompt) and how to answer."""

    model: str
    requests: list[EngineRequest]
    stream: bool
    include_usage: bool
    n: int
    logprobs: int | None
    prompt_logprobs: int | None = None
    """vLLM's `prompt_logprobs` field as asked (the response's own prompt_logprobs list)."""


def bad(param: str, message: str) -> APIError:
    """A 400 naming `param`."""
    return APIError(f"{param}: {message}", param=param)


def parse_chat(
    body: Any,
    honours: frozenset[str],
    engine: str,
    max_logprobs: int = MAX_LOGPROBS,
    response_role: str = "assistant",
) -> Parsed:
    """A chat completions request body, checked against what the engine honours."""
    body = _object(body)
    _known(body, _CHAT)
    _refuse_tools(body)
    raw = body.get("messages")
    # vLLM's first chat API took a string as the prompt itself (no chat template).
    messages = raw if isinstance(raw, str) and raw else _messages(raw)
    logprobs = None
    if _boolean(body, "logprobs", False):
        logprobs = _integer(body, "top_logprobs", 0, 0, max_logprobs)
    elif body.get("top_logprobs") is not None:
        raise bad("top_logprobs", "needs logprobs: true")
    prompt_logprobs = _integer(body, "prompt_logprobs", None, 0, max_logprobs)
    # 0 new tokens only makes sense when scoring the prompt.
    least = 0 if prompt_logprobs is not None else 1
    legacy = _integer(body, "max_tokens", None, least)  # checked even when overridden
    max_tokens = _integer(body, "max_completion_tokens", None, least)
    if max_tokens is None:
        max_tokens = legacy
    continue_final = _boolean(body, "continue_final_message", False)
    add_generation_prompt = _boolean(body, "add_generation_prompt", not continue_final)
    if continue_final and add_generation_prompt:
        raise bad(
            "continue_final_message",
            "cannot be used with add_generation_prompt: true; drop one of them",
        )
    sampling = _sampling(body, max_tokens, logprobs)
    _check_honoured(body, honours, engine, sampling.n)
    check_beams(sampling, honours)
    if isinstance(messages, str):
        return _prompt_chat(body, sampling, messages, prompt_logprobs)
    # vLLM's chat echo: the last message, when it has the role of the reply.
    role = response_role if add_generation_prompt else messages[-1].role
    request = EngineRequest(
        sampling,
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        continue_final_message=continue_final,
        echo=_boolean(body, "echo", False),
        echo_text=messages[-1].text if messages[-1].role == role else "",
        prompt_logprobs=prompt_logprobs,
    )
    parsed = _parsed(body, [request], sampling.n, logprobs)
    parsed.prompt_logprobs = prompt_logprobs
    _refuse_streamed_scores(parsed)
    return parsed


def _prompt_chat(
    body: dict[str, Any], sampling: SamplingParams, prompt: str, prompt_logprobs: int | None
) -> Parsed:
    """A chat request whose `messages` is a string: that text is the prompt, untemplated."""
    if _boolean(body, "continue_final_message", False):
        raise bad("continue_final_message", "needs messages as a list; the string is the prompt")
    request = EngineRequest(
        sampling, prompt=prompt, echo=_boolean(body, "echo", False), prompt_logprobs=prompt_logprobs
    )
    parsed = _parsed(body, [request], sampling.n, sampling.logprobs)
    parsed.prompt_logprobs = prompt_logprobs
    _refuse_streamed_scores(parsed)
    return parsed


def parse_completion(
    body: Any, honours: frozenset[str], engine: str, max_logprobs: int = MAX_LOGPROBS
) -> Parsed:
    """A text completions request body, checked against what the engine honours."""
    body = _object(body)
    _known(body, _COMPLETION)
    if body.get("suffix"):
        raise bad("suffix", f"the {engine} engine does not insert suffixes; remove suffix")
    prompts = _prompts(body.get("prompt"))
    logprobs = _integer(body, "logprobs", None, 0, max_logprobs)
    prompt_logprobs = _integer(body, "prompt_logprobs", None, 0, max_logprobs)
    echo = _boolean(body, "echo", False)
    max_tokens = _integer(body, "max_tokens", COMPLETION_DEFAULT_MAX_TOKENS, 0)
    if max_tokens == 0 and not echo:
        raise bad("max_tokens", "must be >= 1; 0 (score the prompt only) needs echo: true")
    sampling = _sampling(body, max_tokens, logprobs)
    _check_honoured(body, honours, engine, sampling.n)
    check_beams(sampling, honours)
    # The prompt's logprobs are computed once, with the larger of the two k asked.
    wanted = [k for k in (logprobs if echo else None, prompt_logprobs) if k is not None]
    score = max(wanted) if wanted else None
    if echo and logprobs is not None and "prompt_logprobs" not in honours:
        raise bad(
            "echo",
            f"echo with logprobs needs the prompt's logprobs, which the {engine} engine "
            "does not compute; drop echo or logprobs",
        )
    requests = [
        EngineRequest(sampling, prompt=p, echo=echo, prompt_logprobs=score) for p in prompts
    ]
    parsed = _parsed(body, requests, sampling.n, logprobs)
    parsed.prompt_logprobs = prompt_logprobs
    _refuse_streamed_scores(parsed)
    return parsed


def _refuse_streamed_scores(parsed: Parsed) -> None:
    if parsed.stream and parsed.requests[0].prompt_logprobs is not None:
        raise bad(
            "stream",
            "prompt logprobs (prompt_logprobs, or echo with logprobs) are not streamed; "
            "set stream: false",
        )


def _parsed(body: dict[str, Any], requests: list[EngineRequest], n: int, lp: int | None) -> Parsed:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model", "is required: the id listed by GET /v1/models")
    stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad("stream_options", "must be an object")
    include_usage = bool(stream and options and options.get("include_usage"))
    return Parsed(model, requests, stream, include_usage, n, lp)


def chat_messages(raw: Any) -> list[ChatMessage]:
    """A `messages` list as chat requests take it (also used by /tokenize)."""
    return _messages(raw)


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    """A boolean field (absent or null: `default`), else a 400 naming it."""
    return _boolean(body, key, default)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise APIError("the request body must be a JSON object")
    return body


def _known(body: dict[str, Any], allowed: frozenset[str]) -> None:
    for key in body:
        if key not in allowed:
            raise bad(key, "is not a field this endpoint takes; remove it")


def _refuse_tools(body: dict[str, Any]) -> None:
    if body.get("tools"):
        raise bad("tools", "tool calling is not supported by this server; remove tools")
    if body.get("tool_choice") not in (None, "none", "auto"):
        raise bad("tool_choice", "tool calling is not supported by this server")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise bad("response_format", "only {'type': 'text'} is supported; remove it")


def _messages(raw: Any) -> list[ChatMessage]:
    if not isinstance(raw, list) or not raw:
        raise bad("messages", "must be a non-empty list of messages")
    out: list[ChatMessage] = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise bad(where, "must be an object with role and content")
        role = item.get("role")
        text = _content(item.get("content"), f"{where}.content")
        if role == "system" or role == "developer":
            out.append(ChatMessageSystem(content=text))
        elif role == "user":
            out.append(ChatMessageUser(content=text))
        elif role == "assistant":
            if item.get("tool_calls"):
                raise bad(f"{where}.tool_calls", "tool calls are not supported")
            out.append(ChatMessageAssistant(content=text))
        elif role == "tool":
            call_id = item.get("tool_call_id")
            if call_id is not None and not isinstance(call_id, str):
                raise bad(f"{where}.tool_call_id", "must be a string")
            out.append(ChatMessageTool(content=text, tool_call_id=call_id))
        else:
            raise bad(f"{where}.role", f"{role!r} is not system, user, assistant or tool")
    return out


def _content(raw: Any, where: str) -> str:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        texts = []
        for part in raw:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad(where, f"only text parts are supported, not {kind!r}")
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    raise bad(where, "must be a string or a list of text parts")


def _prompts(raw: Any) -> list[str | list[int]]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(p, str) for p in raw):
            return list(raw)
        if all(_is_token(t) for t in raw):
            return [[int(t) for t in raw]]
        if all(isinstance(p, list) and p and all(_is_token(t) for t in p) for p in raw):
            return [[int(t) for t in p] for p in raw]
    raise bad(
        "prompt",
        "must be a string, a list of strings, a list of token ids or a list of such lists",
    )


def _is_token(value: Any) -> bool:
    whole = _whole(value)
    return whole is not None and whole >= 0


def _whole(value: Any) -> int | None:
    """`value` as an int if it is a whole number: JSON Schema counts 2.0 as an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _sampling(body: dict[str, Any], max_tokens: int | None, logprobs: int | None) -> SamplingParams:
    n = _integer(body, "n", 1, 1, 128)
    assert n is not None
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", None, 0.0, 2.0),
        top_p=_number(body, "top_p", None, 0.0, 1.0, low_open=True),
        top_k=_integer(body, "top_k", None, -1),
        min_p=_number(body, "min_p", 0.0, 0.0, 1.0) or 0.0,
        n=n,
        stop=_stop(body.get("stop")),
        stop_token_ids=tuple(_token_list(body, "stop_token_ids")),
        seed=_integer(body, "seed", None),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0) or 0.0,
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0) or 0.0,
        repetition_penalty=_number(body, "repetition_penalty", 1.0, 0.0, None, low_open=True)
        or 1.0,
        logit_bias=_logit_bias(body.get("logit_bias")),
        logprobs=logprobs,
        include_stop_str_in_output=_boolean(body, "include_stop_str_in_output", False),
        ignore_eos=_boolean(body, "ignore_eos", False),
        skip_special_tokens=_boolean(body, "skip_special_tokens", True),
        spaces_between_special_tokens=_boolean(body, "spaces_between_special_tokens", True),
        use_beam_search=_boolean(body, "use_beam_search", False),
        best_of=_integer(body, "best_of", None, 1, 128),
        length_penalty=_number(body, "length_penalty", 1.0, None, None) or 0.0,
        early_stopping=_early_stopping(body.get("early_stopping")),
    )


def _check_honoured(body: dict[str, Any], honours: frozenset[str], engine: str, n: int) -> None:
    beams = body.get("use_beam_search") is True and "use_beam_search" in honours
    for key, neutral in _NEUTRAL.items():
        if key not in body or key in honours:
            continue
        value = body[key]
        if key == "best_of" and (_whole(value) == n or beams):
            continue  # best_of == n picks every candidate: plain sampling; else the beam width
        # Typed match: in Python 0 == False and 1 == True, on the wire they differ.
        if any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in neutral):
            continue
        raise bad(
            key, f"is not supported by the {engine} engine; remove it or send {_wire(neutral[-1])}"
        )


def check_beams(p: SamplingParams, honours: frozenset[str]) -> None:
    """vLLM's rules for beam search and the settings that only apply to it (a 400 if broken)."""
    if not isinstance(p.early_stopping, bool) and p.early_stopping != "never":
        raise bad("early_stopping", 'must be true, false or "never"')
    if not p.use_beam_search:
        if p.length_penalty != 1.0:
            raise bad("length_penalty", "only applies to beam search; send use_beam_search: true")
        if p.early_stopping is not False:
            raise bad("early_stopping", "only applies to beam search; send use_beam_search: true")
        return
    if "use_beam_search" not in honours:
        return  # refused by _check_honoured with the engine's name
    width = p.best_of if p.best_of is not None else p.n
    if width < 2:
        raise bad("best_of", "must be greater than 1 with use_beam_search (it is the beam width)")
    if width < p.n:
        raise bad("best_of", f"must be >= n ({p.n}): the n best of best_of beams are returned")
    if p.temperature:
        raise bad("temperature", "must be 0 with use_beam_search (beam search is deterministic)")
    if (p.top_p is not None and p.top_p < 1.0) or (p.top_k is not None and p.top_k > 0):
        raise bad(
            "top_p" if p.top_p is not None and p.top_p < 1.0 else "top_k",
            "is for sampling; leave it unset with use_beam_search",
        )
    if p.min_p:
        raise bad("min_p", "is for sampling; leave it unset with use_beam_search")
    if p.logprobs is not None:
        raise bad("logprobs", "is not returned with use_beam_search; drop one of them")
    if p.ignore_eos:
        raise bad("ignore_eos", "cannot be combined with use_beam_search (beams end at EOS)")


def _early_stopping(raw: Any) -> bool | str:
    """The value, or its JSON text when invalid: refused after the engine check, so an
    engine that does not take early_stopping says so first."""
    if raw is None:
        return False
    if isinstance(raw, bool):
        return raw
    return "never" if raw == "never" else _wire(raw)


def _wire(value: Any) -> str:
    return orjson.dumps(value).decode()


def _boolean(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(key, "must be true or false")
    return value


def _integer(
    body: dict[str, Any],
    key: str,
    default: int | None,
    low: int | None = None,
    high: int | None = None,
) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    whole = _whole(value)
    if whole is None:
        raise bad(key, "must be an integer")
    value = whole
    if (low is not None and value < low) or (high is not None and value > high):
        raise bad(
            key, f"must be between {low} and {high}" if high is not None else f"must be >= {low}"
        )
    return value


def _number(
    body: dict[str, Any],
    key: str,
    default: float | None,
    low: float | None,
    high: float | None,
    low_open: bool = False,
) -> float | None:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise bad(key, "must be a number")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        side = f"> {low}" if low_open else f">= {low}"
        raise bad(key, f"must be {side}" + (f" and <= {high}" if high is not None else ""))
    return float(value)


def _stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and len(raw) <= 16 and all(isinstance(s, str) for s in raw):
        return tuple(raw)
    raise bad("stop", "must be a string or a list of up to 16 strings")


def _token_list(body: dict[str, Any], key: str) -> list[int]:
    raw = body.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(_is_token(t) for t in raw):
        raise bad(key, "must be a list of token ids")
    return [int(t) for t in raw]


def _logit_bias(raw: Any) -> tuple[tuple[int, float], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise bad("logit_bias", "must map token ids to biases")
    out = []
    for key, value in raw.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise bad("logit_bias", f"key {key!r} is not a token id") from None
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not -100 <= value <= 100
        ):
            raise bad("logit_bias", f"bias for {key} must be a number in [-100, 100]")
        out.append((token, float(value)))
    return tuple(sorted(out))
