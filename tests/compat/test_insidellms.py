"""insideLLMs' Models page (seed 002), made against gauge, offline.

The page's calls, in its own spelling where gauge keeps it: the model interface
(generate / chat / stream / info), the registry, direct instantiation, the YAML
`model:` block, and the providers its table lists (Hugging Face local and
remote, llama.cpp, vLLM, Ollama, ...). Remote providers talk to fakes of their
wire format on 127.0.0.1 (wire_server.py); local models are the bundled gauge-tiny.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from wire_server import WireServer, openai_reply

from gauge.errors import ConfigError, MissingAPIKey
from gauge.model import get_model, model_from_config
from gauge.model.sync import SyncModel
from gauge.model.sync_models import (
    AnthropicModel,
    DummyModel,
    HuggingFaceInferenceModel,
    HuggingFaceModel,
    LlamaCppModel,
    OllamaModel,
    OpenAIModel,
    TGIModel,
    VLLMModel,
    ensure_builtins_registered,
    model_registry,
)

QUESTION = "What is 7+85?"  # gauge-tiny answers "92", one token per character


def echo_model(body: dict[str, Any]) -> dict[str, Any]:
    return openai_reply(f"hello from {body['model']}", body["model"])


# -- The model interface -------------------------------------------------------------------


def test_the_model_interface_generate_chat_stream_info() -> None:
    model = DummyModel(response="test response")
    assert model.generate("Say hi") == "test response"
    assert model.chat([{"role": "user", "content": "Hi"}]) == "test response"
    assert "".join(model.stream("Say hi")) == "test response"
    info = model.info()
    assert info["provider"] == "mock" and info["model_id"] == "dummy"
    assert info["supports_streaming"] is True and info["supports_chat"] is True
    assert {"name", "provider", "model_id", "supports_streaming", "supports_chat"} <= set(info)


def test_dummy_model_without_a_response_echoes_the_prompt() -> None:
    assert DummyModel().generate("repeat me") == "repeat me"
    with pytest.raises(ConfigError, match="response= must be text"):
        DummyModel(response=3)  # type: ignore[arg-type]


def test_info_reports_the_openai_model_as_the_page_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    info = OpenAIModel(model_name="gpt-4o", temperature=0.7, max_tokens=128000).info()
    assert info["name"] == "openai/gpt-4o"  # renamed: provider/model, gauge's one spelling
    assert info["provider"] == "openai" and info["model_id"] == "gpt-4o"
    assert info["supports_streaming"] is True and info["supports_chat"] is True
    assert info["max_tokens"] == 128000


# -- Creating models ----------------------------------------------------------------------


def test_direct_instantiation_sends_the_given_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with WireServer(echo_model) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        openai = OpenAIModel(model_name="gpt-4o", temperature=0.7)
        assert isinstance(openai, SyncModel)
        assert openai.generate("Hi") == "hello from gpt-4o"
        assert "".join(openai.stream("Hi")) == "hello from gpt-4o"
    body = server.seen[0].body
    assert body["model"] == "gpt-4o" and body["temperature"] == 0.7
    assert server.seen[0].headers["Authorization"] == "Bearer sk-test"
    assert server.seen[1].body["stream"] is True


def test_anthropic_model_needs_its_key_and_names_the_variable() -> None:
    with pytest.raises(MissingAPIKey, match="ANTHROPIC_API_KEY"):
        AnthropicModel(model_name="claude-3-5-sonnet-20241022")
    with pytest.raises(ConfigError, match=r"OpenAIModel needs model_name="):
        OpenAIModel()


def test_the_registry_builds_models_by_type(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ensure_builtins_registered()
    for provider in ("openai", "anthropic", "google", "cohere", "hf", "ollama", "vllm"):
        assert provider in names
    assert {"tgi", "llama-cpp", "hf-inference-providers", "dummy"} <= set(names)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with WireServer(echo_model) as server:
        model = model_registry.get("openai", model_name="gpt-4o", base_url=server.url)
        assert model.generate("Hi") == "hello from gpt-4o"
    assert model_registry.get("dummy", response="r").generate("q") == "r"


def test_the_yaml_model_block_builds_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "model:\n  type: openai\n  args:\n    model_name: gpt-4o\n    temperature: 0.7\n"
        "probe:\n  type: logic\n"  # the run's other blocks are not the model's business
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with WireServer(echo_model) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        model = model_from_config(config)
        assert model.name == "openai/gpt-4o" and model.config.temperature == 0.7
        assert model.sync().generate("Hi") == "hello from gpt-4o"
    assert server.seen[0].body["temperature"] == 0.7


def test_the_yaml_model_block_drives_gauge_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gauge.cli.main import main

    task = tmp_path / "probe.py"
    task.write_text(
        "from gauge import Task, task\nfrom gauge.dataset import Sample\n"
        "from gauge.scorer import match\n\n@task\ndef probe() -> Task:\n"
        "    return Task([Sample(input='hello', target='hello')], scorer=match())\n"
    )
    config = tmp_path / "run.yaml"
    config.write_text(
        "model:\n  type: mock\n  args:\n    model_name: dummy\n    temperature: 0.7\n"
        "    latency: 0.0\nprobe:\n  type: logic\n"
    )
    logs = tmp_path / "logs"
    try:
        main(["eval", str(task), "--model-config", str(config), "--log-dir", str(logs)])
    except SystemExit as ex:  # main exits only on failure
        pytest.fail(f"gauge eval exited {ex.code}: {capsys.readouterr().err}")
    header = json.loads(next(logs.glob("*.jsonl")).read_text().splitlines()[0])
    assert header["model"]["name"] == "mock/dummy"
    assert header["resolved_config"] == {"temperature": 0.7}
    assert header["model_args"] == {"latency": 0.0}


def test_a_model_block_without_type_or_model_is_a_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  args:\n    model_name: gpt-4o\n")
    with pytest.raises(ConfigError, match="the 'model:' block needs 'type'") as info:
        model_from_config(config)
    assert "\n" not in str(info.value)


# -- Local models: Hugging Face streams token by token -------------------------------------


def test_hf_model_streams_one_piece_per_token() -> None:
    pytest.importorskip("transformers")
    model = HuggingFaceModel(max_tokens=8)
    assert model.info()["supports_streaming"] is True
    pieces = list(model.stream(QUESTION))
    # Two tokens, two pieces: the whole completion at once would be one piece.
    assert pieces == ["9", "2"]
    assert model.generate(QUESTION) == "92"


async def test_hf_stream_yields_before_generation_ends() -> None:
    # The generation thread below cannot finish until the consumer has the first
    # piece: a stream that only delivered text at the end would time out here.
    import threading

    from gauge.model.providers.hf.generation import GenChoice, GenResult
    from gauge.model.providers.hf.streaming import TextStream, stream_tokens

    class Letters:  # token id n is the letter chr(n)
        def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
            return "".join(map(chr, ids))

    first_piece_seen = threading.Event()

    def generate(on_token: Any) -> GenResult:
        on_token(0, ord("9"))
        assert first_piece_seen.wait(5), "the first piece was not delivered while generating"
        on_token(0, ord("2"))
        return GenResult(
            input_tokens=3, choices=[GenChoice(text="92", token_ids=[57, 50], stop_reason="stop")]
        )

    async def submit(on_token: Any) -> GenResult:
        return await asyncio.to_thread(generate, on_token)

    pieces: list[str] = []
    async for item in stream_tokens(submit, lambda: TextStream(Letters(), frozenset(), ())):
        if isinstance(item, str):
            pieces.append(item)
            first_piece_seen.set()
    assert pieces == ["9", "2", ""]


def test_hf_stream_holds_back_a_stop_sequence() -> None:
    pytest.importorskip("transformers")
    model = HuggingFaceModel()
    assert "".join(model.stream(QUESTION, stop_seqs=["2"])) == model.generate(
        QUESTION, stop_seqs=["2"]
    )
    assert model.generate(QUESTION, stop_seqs=["2"]) == "9"


# -- Remote Hugging Face: TGI and Inference Providers; llama.cpp's server -------------------


def tgi_reply(body: dict[str, Any]) -> dict[str, Any]:
    # TGI answers with its own version as system_fingerprint and the model id it serves.
    return openai_reply(
        "TGI says hi", "meta-llama/Llama-3.1-8B-Instruct", system_fingerprint="2.4.0-native"
    )


def test_tgi_messages_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TGI_API_KEY", "hf_endpoint")
    with WireServer(tgi_reply) as server:
        monkeypatch.setenv("TGI_BASE_URL", server.url)
        model = TGIModel(max_tokens=20)
        assert model.generate("What is deep learning?") == "TGI says hi"
        assert "".join(model.stream("What is deep learning?")) == "TGI says hi"
    seen = server.seen[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "tgi" and seen.body["max_tokens"] == 20
    assert seen.headers["Authorization"] == "Bearer hf_endpoint"


def test_tgi_refuses_what_the_messages_api_cannot_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with WireServer(tgi_reply) as server:
        model = get_model("tgi/tgi", base_url=server.url)
        with pytest.raises(ConfigError, match="num_choices"):
            asyncio.run(model.generate("x", config={"num_choices": 2}))
    assert server.seen == []


def test_hf_inference_providers_router(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(MissingAPIKey, match="HF_TOKEN"):
        get_model("hf-inference-providers/meta-llama/Llama-3.1-8B-Instruct")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert (
        get_model("hf-inference-providers/x/y").api.base_url == "https://router.huggingface.co/v1"
    )
    with WireServer(echo_model) as server:
        monkeypatch.setenv("HF_INFERENCE_PROVIDERS_BASE_URL", server.url)
        model = HuggingFaceInferenceModel(model_name="meta-llama/Llama-3.1-8B-Instruct:cerebras")
        reply = model.generate("Hi")
    # The host suffix travels as part of the model id: the router picks the host.
    assert reply == "hello from meta-llama/Llama-3.1-8B-Instruct:cerebras"
    assert server.seen[0].headers["Authorization"] == "Bearer hf_secret"


def llama_cpp_reply(body: dict[str, Any]) -> dict[str, Any]:
    answer = openai_reply("llama says hi", "gpt-3.5-turbo")
    del answer["usage"]  # older llama-server builds report timings only
    answer["timings"] = {"prompt_n": 11, "predicted_n": 4, "predicted_ms": 12.5}
    return answer


def test_llama_cpp_server_timings_become_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    with WireServer(llama_cpp_reply) as server:
        monkeypatch.setenv("LLAMA_CPP_BASE_URL", server.url)
        model = LlamaCppModel(cache_prompt=True, top_k=40)
        output = asyncio.run(model.model.generate("Hi"))
    assert output.completion == "llama says hi"
    assert output.usage is not None
    assert (output.usage.input_tokens, output.usage.output_tokens) == (11, 4)
    assert output.metadata is not None and output.metadata["timings"]["predicted_ms"] == 12.5
    body = server.seen[0].body
    # GenerateConfig's cache_prompt is llama-server's field of the same name.
    assert body["cache_prompt"] is True and body["top_k"] == 40
    monkeypatch.delenv("LLAMA_CPP_BASE_URL")
    assert get_model("llama-cpp/default").api.base_url == "http://localhost:8080/v1"


def test_vllm_and_ollama_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    with WireServer(echo_model) as server:
        assert VLLMModel(model_name="Qwen/Qwen2.5-0.5B", base_url=server.url).generate("Hi") == (
            "hello from Qwen/Qwen2.5-0.5B"
        )
        assert OllamaModel(model_name="llama3.2", base_url=server.url).generate("Hi") == (
            "hello from llama3.2"
        )
