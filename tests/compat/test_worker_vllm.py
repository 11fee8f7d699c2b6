"""runpod-workers/worker-vllm's README (seed 004), made against gauge, offline.

The README's OpenAI client calls and curl body go to `gauge serve` on 127.0.0.1
running the default transformers engine with the bundled gauge-tiny; its
request parameters are checked one by one (beam search against transformers'
own `generate`); its standard-form job input goes to the worker handler; its
environment defaults and its baked-image build arguments are checked as data.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gauge.serve.settings import Settings, load_settings

openai = pytest.importorskip("openai")
pytest.importorskip("transformers")
pytest.importorskip("uvicorn")

from gauge.serve.app import build_app  # noqa: E402 (needs the serve extra, checked above)
from gauge.serve.engines.transformers import TransformersEngine  # noqa: E402
from gauge.serve.worker import Worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "src" / "gauge" / "assets" / "gauge-tiny"
KEY = "sk-runpod"
MODEL = "gauge-tiny"  # the README's <YOUR DEPLOYED MODEL REPO/NAME>
QUESTION = "What is 7+85?"  # gauge-tiny answers "92" then EOS, one token per character


class Served:
    """gauge serve (transformers engine) on a free port in a thread."""

    def __init__(self) -> None:
        import uvicorn

        settings = Settings(api_key=KEY)
        self.engine = TransformersEngine.from_settings(settings)
        app = build_app(self.engine, settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # /health is 200 once the model is loaded
            try:
                with urllib.request.urlopen(self.url[:-3] + "/health", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("gauge serve did not become ready")

    def post(self, route: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of a POST sent as the README's curl sends it (/tokenize: no /v1)."""
        base = self.url[:-3] if route == "/tokenize" else self.url
        request = urllib.request.Request(
            base + route,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as ex:
            with ex:
                return ex.code, json.loads(ex.read())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    server = Served()
    yield server
    server.stop()


@pytest.fixture
def client(served: Served) -> Any:
    # The README's client: api_key and base_url changed, nothing else.
    return openai.OpenAI(api_key=KEY, base_url=served.url, max_retries=0)


def chat(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 8,
        **extra,
    }


# -- Usage: OpenAI compatibility (the README's calls as written) ---------------------------


def test_chat_completions_non_streaming_and_streaming(client: Any) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=100,
    )
    assert response.choices[0].message.content == "92"
    response_stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=100,
        stream=True,
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in response_stream if chunk.choices]
    assert "".join(pieces) == "92" and len([p for p in pieces if p]) == 2


def test_completions_non_streaming_and_streaming(client: Any) -> None:
    response = client.completions.create(
        model=MODEL, prompt="Runpod is the best platform because", temperature=0, max_tokens=100
    )
    text = response.choices[0].text
    assert isinstance(text, str) and response.usage.completion_tokens >= 1
    response_stream = client.completions.create(
        model=MODEL,
        prompt="Runpod is the best platform because",
        temperature=0,
        max_tokens=100,
        stream=True,
    )
    assert "".join(r.choices[0].text or "" for r in response_stream if r.choices) == text


def test_models_list_names_the_deployed_model(client: Any) -> None:
    assert [model.id for model in client.models.list()] == [MODEL]


def test_the_curl_body(served: Served) -> None:
    status, body = served.post(
        "/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": QUESTION}],
            "temperature": 0,
            "max_tokens": 100,
        },
    )
    assert status == 200 and body["choices"][0]["message"]["content"] == "92"


# -- Request parameters on the transformers engine -----------------------------------------


def test_ignore_eos_generates_to_max_tokens(served: Served) -> None:
    _, plain = served.post("/chat/completions", chat())
    assert plain["usage"]["completion_tokens"] == 3  # "9", "2", EOS
    _, through = served.post("/chat/completions", chat(ignore_eos=True))
    assert through["usage"]["completion_tokens"] == 8
    assert through["choices"][0]["finish_reason"] == "length"
    assert through["choices"][0]["message"]["content"].startswith("92")


def test_skip_special_tokens_and_spaces_between_them(served: Served) -> None:
    _, skipped = served.post("/chat/completions", chat(ignore_eos=True))
    _, kept = served.post("/chat/completions", chat(ignore_eos=True, skip_special_tokens=False))
    _, joined = served.post(
        "/chat/completions",
        chat(ignore_eos=True, skip_special_tokens=False, spaces_between_special_tokens=False),
    )
    skipped_text = skipped["choices"][0]["message"]["content"]
    kept_text = kept["choices"][0]["message"]["content"]
    joined_text = joined["choices"][0]["message"]["content"]
    assert "<|eos|>" not in skipped_text
    assert kept_text.startswith("92 <|eos|>")  # a space each side of a special token
    assert joined_text.startswith("92<|eos|>")
    assert joined_text.replace("<|eos|>", "") == skipped_text
    assert kept_text.replace(" ", "") == joined_text.replace(" ", "")


def test_skip_special_tokens_false_streams_the_same_text(client: Any) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        stream=True,
        extra_body={"ignore_eos": True, "skip_special_tokens": False},
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    whole = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        extra_body={"ignore_eos": True, "skip_special_tokens": False},
    )
    assert streamed == whole.choices[0].message.content and "<|eos|>" in streamed


def transformers_beams(prompt_ids: list[int], **options: Any) -> list[str]:
    """What transformers' own beam search answers for these prompt ids."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY)
    model = AutoModelForCausalLM.from_pretrained(TINY)
    ids = torch.tensor([prompt_ids])
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, **options
    )
    return [tokenizer.decode(row[len(prompt_ids) :], skip_special_tokens=True) for row in out]


def test_use_beam_search_with_best_of_n_length_penalty_early_stopping(served: Served) -> None:
    body = chat(
        use_beam_search=True, best_of=4, n=2, length_penalty=0.5, early_stopping=True, temperature=0
    )
    status, reply = served.post("/chat/completions", body)
    assert status == 200, reply
    texts = [c["message"]["content"] for c in reply["choices"]]
    status, tokenized = served.post("/tokenize", {"model": MODEL, "messages": body["messages"]})
    assert status == 200 and len(tokenized["tokens"]) == reply["usage"]["prompt_tokens"]
    assert texts == transformers_beams(
        tokenized["tokens"],
        num_beams=4,
        num_return_sequences=2,
        length_penalty=0.5,
        early_stopping=True,
        max_new_tokens=8,
    )
    assert texts[0] == "92" and len(set(texts)) == 2


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"use_beam_search": True}, "best_of", "greater than 1"),
        ({"use_beam_search": True, "best_of": 2, "n": 3}, "best_of", ">= n"),
        ({"use_beam_search": True, "best_of": 2, "temperature": 0.8}, "temperature", "0"),
        ({"use_beam_search": True, "best_of": 2, "ignore_eos": True}, "ignore_eos", "EOS"),
        ({"length_penalty": 0.5}, "length_penalty", "beam search"),
        ({"early_stopping": "never"}, "early_stopping", "beam search"),
        ({"early_stopping": "sometimes"}, "early_stopping", '"never"'),
        ({"best_of": 3}, "best_of", "not supported"),
    ],
)
def test_beam_settings_are_checked(
    served: Served, extra: dict[str, Any], param: str, words: str
) -> None:
    status, body = served.post("/chat/completions", chat(**extra))
    assert status == 400
    assert body["error"]["param"] == param and words in body["error"]["message"]


def test_chat_messages_as_a_string_is_the_prompt(served: Served) -> None:
    _, templated = served.post("/chat/completions", chat())
    rendered = "<|user|>What is 7+85?<|assistant|>"  # gauge-tiny's template, rendered
    status, raw = served.post("/chat/completions", chat(messages=rendered))
    assert status == 200
    assert raw["choices"][0]["message"] == templated["choices"][0]["message"]
    assert raw["usage"]["prompt_tokens"] == templated["usage"]["prompt_tokens"]
    status, body = served.post("/chat/completions", chat(messages=""))
    assert status == 400 and body["error"]["param"] == "messages"


def test_completions_suffix_is_refused_with_the_reason(served: Served) -> None:
    status, body = served.post(
        "/completions", {"model": MODEL, "prompt": "def f(", "suffix": "return x"}
    )
    assert status == 400 and body["error"]["param"] == "suffix"
    assert "does not insert suffixes" in body["error"]["message"]


def test_user_is_accepted_and_a_seed_repeats_a_sample(served: Served) -> None:
    def sample(seed: int, user: str) -> str:
        body = chat(messages=[{"role": "user", "content": "hello there"}], temperature=2.0)
        status, reply = served.post("/chat/completions", {**body, "seed": seed, "user": user})
        assert status == 200, reply
        text: str = reply["choices"][0]["message"]["content"]
        return text

    first = sample(7, "u-1")
    assert sample(7, "u-2") == first
    assert any(sample(seed, "u-1") != first for seed in range(8, 16))


# -- Usage: standard (non-OpenAI) job input ------------------------------------------------


async def test_standard_input_with_sampling_params(served: Served) -> None:
    worker = Worker(served.engine, Settings())
    beams = await worker.aggregate(
        {
            "input": {
                "messages": [{"role": "user", "content": QUESTION}],
                "sampling_params": {
                    "max_tokens": 8,
                    "n": 2,
                    "best_of": 4,
                    "use_beam_search": True,
                    "length_penalty": 0.5,
                    "early_stopping": True,
                },
            }
        }
    )
    assert beams[0]["choices"][0]["tokens"] == ["92"]
    through = await worker.aggregate(
        {
            "input": {
                "messages": [{"role": "user", "content": QUESTION}],
                "sampling_params": {"max_tokens": 6, "ignore_eos": True},
            }
        }
    )
    assert through[0]["usage"]["output"] == 6


# -- Environment defaults and the baked image ----------------------------------------------


def test_environment_defaults_are_the_readmes() -> None:
    s = load_settings({}, {})
    assert s.max_concurrency == 300
    assert s.disable_log_stats is True and s.disable_log_requests is True
    assert s.seed == 0
    assert s.raw_openai_output is True and s.openai_response_role == "assistant"
    assert (s.default_batch_size, s.default_min_batch_size) == (50, 1)
    assert s.default_batch_size_growth_factor == 3.0
    assert s.trust_remote_code is False and s.enforce_eager is False
    assert s.disable_custom_all_reduce is False
    # 0 and 1 are the booleans, as the README says.
    on = load_settings({}, {"DISABLE_LOG_STATS": "0", "DISABLE_LOG_REQUESTS": "0"})
    assert on.disable_log_stats is False and on.disable_log_requests is False


def test_baked_image_takes_model_revision() -> None:
    text = (ROOT / "docker" / "Dockerfile.baked").read_text()
    assert re.search(r"^ARG MODEL_REVISION=main$", text, re.MULTILINE)
    assert re.search(r"^\s+MODEL_REVISION=\$\{MODEL_REVISION\} \\$", text, re.MULTILINE)
    assert re.search(
        r'snapshot_download\(\s*os\.environ\["MODEL_NAME"\],\s*revision=os\.environ\.get\("MODEL_REVISION"\)',
        text,
    )
    for arg in ("MODEL_NAME", "BASE_PATH", "QUANTIZATION", "TOKENIZER_NAME", "TOKENIZER_REVISION"):
        assert re.search(rf"^ARG {arg}\b", text, re.MULTILINE), arg
