"""POST /tokenize and /detokenize: vLLM's shapes, the model's own tokenizer, errors, auth."""

from __future__ import annotations

import functools
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

from gauge.serve.engines.mock import MockEngine
from gauge.serve.tokenize import parse_detokenize, parse_tokenize


@functools.cache
def tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    from gauge.model.providers.hf.loading import bundled_path

    return transformers.AutoTokenizer.from_pretrained(bundled_path())


def post(
    root: str, path: str, body: Any = None, raw: bytes | None = None, key: str | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else orjson.dumps(body)
    request = urllib.request.Request(f"{root}{path}", data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, orjson.loads(reply.read())
    except urllib.error.HTTPError as ex:
        return ex.code, orjson.loads(ex.read())


def test_tokenize_text_equals_the_model_tokenizer(tiny_server: Any) -> None:
    text = "What is 12+7?"
    status, body = post(tiny_server.root, "/tokenize", {"model": "gauge-tiny", "prompt": text})
    expected = list(tokenizer()(text)["input_ids"])
    assert status == 200
    assert body == {"count": len(expected), "max_model_len": 512, "tokens": expected}
    _, bare = post(tiny_server.root, "/tokenize", {"prompt": text, "add_special_tokens": False})
    assert bare["tokens"] == tokenizer().encode(text, add_special_tokens=False)
    _, strs = post(tiny_server.root, "/tokenize", {"prompt": "1+1", "return_token_strs": True})
    assert strs["token_strs"] == ["1", "+", "1"]
    status, back = post(tiny_server.root, "/detokenize", {"tokens": expected})
    assert status == 200 and back == {"prompt": tokenizer().decode(expected)}


def test_tokenize_messages_as_chat_requests_are_templated(tiny_server: Any) -> None:
    messages = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    cases = [
        ({}, {"add_generation_prompt": True}),
        ({"add_generation_prompt": False}, {"add_generation_prompt": False}),
        ({"continue_final_message": True}, {"continue_final_message": True}),
    ]
    for fields, template in cases:
        status, body = post(tiny_server.root, "/tokenize", {"messages": messages, **fields})
        text = tokenizer().apply_chat_template(messages, tokenize=False, **template)
        assert status == 200
        assert body["tokens"] == tokenizer()(text, add_special_tokens=False)["input_ids"]
    _, open_ended = post(
        tiny_server.root, "/tokenize", {"messages": messages, "continue_final_message": True}
    )
    _, decoded = post(tiny_server.root, "/detokenize", {"tokens": open_ended["tokens"]})
    assert decoded["prompt"] == "<|user|>2+2?<|assistant|>4"  # left open: no <|eos|>


def test_tokenized_ids_are_what_completions_score(tiny_server: Any) -> None:
    text = "3+4=7"
    _, body = post(tiny_server.root, "/tokenize", {"prompt": text})
    by_text = post(
        tiny_server.url,
        "/completions",
        {"model": "gauge-tiny", "prompt": text, "echo": True, "logprobs": 0, "max_tokens": 0},
    )[1]
    by_ids = post(
        tiny_server.url,
        "/completions",
        {
            "model": "gauge-tiny",
            "prompt": body["tokens"],
            "echo": True,
            "logprobs": 0,
            "max_tokens": 0,
        },
    )[1]
    assert by_text["choices"][0]["logprobs"] == by_ids["choices"][0]["logprobs"]
    assert by_text["usage"]["prompt_tokens"] == body["count"]


def test_bad_bodies_are_400_in_openais_shape(tiny_server: Any, check_schema: Any) -> None:
    cases: list[tuple[str, Any, str | None]] = [
        ("/tokenize", {}, "prompt"),
        ("/tokenize", {"prompt": 5}, "prompt"),
        ("/tokenize", {"prompt": "x", "bogus": 1}, "bogus"),
        ("/tokenize", {"prompt": "x", "add_special_tokens": "yes"}, "add_special_tokens"),
        ("/tokenize", {"messages": []}, "messages"),
        ("/tokenize", {"messages": [{"role": "user", "content": "x"}], "prompt": "x"}, "prompt"),
        (
            "/tokenize",
            {
                "messages": [{"role": "user", "content": "x"}],
                "continue_final_message": True,
                "add_generation_prompt": True,
            },
            "continue_final_message",
        ),
        ("/tokenize", [1, 2], None),
        ("/detokenize", {"tokens": "12"}, "tokens"),
        ("/detokenize", {"tokens": [1, -2]}, "tokens"),
        ("/detokenize", {"tokens": [1, True]}, "tokens"),
        ("/detokenize", {"tokens": [10**7]}, None),
    ]
    for path, body, param in cases:
        status, reply = post(tiny_server.root, path, body)
        assert status == 400, (path, body, reply)
        check_schema("ErrorResponse", reply)
        assert reply["error"]["param"] == param
        assert "\n" not in reply["error"]["message"]
    status, reply = post(tiny_server.root, "/detokenize", {"tokens": [10**7]})
    assert "10000000 is not in the vocabulary" in reply["error"]["message"]
    status, reply = post(tiny_server.root, "/tokenize", raw=b"{nope")
    assert status == 400 and "JSON" in reply["error"]["message"]
    status, reply = post(tiny_server.root, "/tokenize", {"model": "other", "prompt": "x"})
    assert status == 404 and reply["error"]["code"] == "model_not_found"


def test_auth_and_the_mock_engines_tokenizer(serve: Any) -> None:
    server = serve(MockEngine("mock-model"), api_key="sekret")
    status, reply = post(server.root, "/tokenize", {"prompt": "a b"})
    assert status == 401 and reply["error"]["code"] == "invalid_api_key"
    assert post(server.root, "/detokenize", {"tokens": [1]})[0] == 401
    status, body = post(server.root, "/tokenize", {"prompt": "a b 7 a"}, key="sekret")
    assert status == 200 and body["count"] == 4
    first, second, seven, again = body["tokens"]
    assert seven == 7 and again == first != second
    _, back = post(server.root, "/detokenize", {"tokens": body["tokens"]}, key="sekret")
    assert back == {"prompt": "a b 7 a"}
    _, chat = post(
        server.root,
        "/tokenize",
        {"messages": [{"role": "user", "content": "a b"}], "return_token_strs": True},
        key="sekret",
    )
    assert chat["tokens"] == [first, second] and chat["token_strs"] == ["a", "b"]


def test_parsers_fill_vllms_defaults() -> None:
    model, request, strs = parse_tokenize({"prompt": "x"})
    assert (model, request.prompt, request.add_special_tokens, strs) == (None, "x", True, False)
    _, chat, _ = parse_tokenize({"messages": [{"role": "user", "content": "x"}]})
    assert chat.add_generation_prompt and not chat.continue_final_message
    assert chat.add_special_tokens is None  # as chat generation: the template decides
    _, cont, _ = parse_tokenize(
        {"messages": [{"role": "assistant", "content": "x"}], "continue_final_message": True}
    )
    assert not cont.add_generation_prompt and cont.continue_final_message
    assert parse_detokenize({"model": "m", "tokens": [3, 4]}) == ("m", [3, 4])


def get(root: str, path: str, key: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"{root}{path}")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, orjson.loads(reply.read())
    except urllib.error.HTTPError as ex:
        return ex.code, orjson.loads(ex.read())


def test_tokenizer_info_names_the_special_tokens_like_vllm(tiny_server: Any) -> None:
    # lm-eval's remote tokenizer and gauge's ServerTokenizer read bos/eos from here.
    status, info = get(tiny_server.root, "/tokenizer_info")
    tok = tokenizer()
    assert status == 200
    assert info["tokenizer_class"] == type(tok).__name__
    assert info["eos_token"] == tok.eos_token and info["bos_token"] == tok.bos_token
    assert info["chat_template"] == tok.chat_template
    assert info["model_max_length"] == 512
    _, ids = post(
        tiny_server.root, "/tokenize", {"prompt": info["eos_token"], "add_special_tokens": False}
    )
    assert ids["tokens"] == [tok.eos_token_id]


def test_tokenizer_info_needs_the_key(serve: Any) -> None:
    server = serve(MockEngine("mock-model"), api_key="sekret")
    assert get(server.root, "/tokenizer_info")[0] == 401
    status, info = get(server.root, "/tokenizer_info", key="sekret")
    assert status == 200 and info["tokenizer_class"] == "MockWordTokenizer"
