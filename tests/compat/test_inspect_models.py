"""Inspect AI's Models page (seed 000), run against gauge offline.

Each test makes a call, command line or environment setting the page shows and
checks what reaches a fake provider on 127.0.0.1 that speaks that provider's
wire format (OpenAI chat completions, Anthropic Messages, Gemini
generateContent, Mistral chat). docs/compatibility.md ("Inspect AI") is the
table these tests check.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "model" / "providers" / "fakes"))

from fake_anthropic import FakeAnthropic, FakeServer, Recorded, Reply
from fake_google import FakeGoogle
from fake_mistral import FakeMistral, completion

from gauge import Task, eval, task
from gauge.cli.main import main
from gauge.dataset import Sample
from gauge.errors import ConfigError
from gauge.evaluation.task import TaskError, TaskForModel, load_task
from gauge.model import GenerateConfig, Model, get_model
from gauge.model.registry import provider_names
from gauge.solver import generate, system_message


class FakeOpenAI(FakeServer):
    """OpenAI's chat completions (also Together's, Ollama's, a vLLM server's)."""

    def default(self, recorded: Recorded) -> Reply:
        if not recorded.path.endswith("/chat/completions"):
            return Reply(404, {"error": {"message": "not found", "type": "invalid_request"}})
        return Reply(body=completion("4", model=recorded.body["model"]))


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def google() -> AsyncIterator[FakeGoogle]:
    fake = FakeGoogle()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def mistral() -> AsyncIterator[FakeMistral]:
    fake = FakeMistral()
    await fake.start()
    yield fake
    await fake.stop()


async def ask(name: str, **model_args: Any) -> str:
    async with get_model(name, memoize=False, **model_args) as model:
        return (await model.generate("Say hello")).completion


# -- providers and model names -------------------------------------------------------------


def test_every_provider_of_the_page_is_known() -> None:
    # openai/gpt-3.5-turbo, anthropic/claude-2.1, ..., cf/meta/llama-2-7b-chat-fp16
    page = {"openai", "anthropic", "google", "mistral", "hf", "vllm", "ollama", "together"}
    page |= {"bedrock", "azureai", "cf"}
    assert page <= set(provider_names())


# -- API keys and base URLs from the environment -------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "key_var"),
    [
        ("openai", "gpt-3.5-turbo", "OPENAI_API_KEY"),
        ("together", "lmsys/vicuna-13b-v1.5", "TOGETHER_API_KEY"),
        ("ollama", "llama3", None),  # "None required"
    ],
)
async def test_openai_client_providers_read_key_and_base_url(
    openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    model: str,
    key_var: str | None,
) -> None:
    monkeypatch.setenv(f"{provider.upper()}_BASE_URL", f"{openai.url}/v1")
    if key_var:
        monkeypatch.setenv(key_var, f"key-{provider}")
    assert await ask(f"{provider}/{model}") == "4"
    assert openai.last.path == "/v1/chat/completions"
    assert openai.last.body["model"] == model
    expected = f"Bearer key-{provider}" if key_var else None
    assert openai.last.headers.get("authorization") == expected


async def test_anthropic_key_and_base_url(
    anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic.url)
    assert await ask("anthropic/claude-2.1") == "Hello!"
    assert anthropic.last.path == "/v1/messages"
    assert anthropic.last.headers["x-api-key"] == "sk-ant"
    assert anthropic.last.body["model"] == "claude-2.1"


async def test_google_key_and_base_url(google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    monkeypatch.setenv("GOOGLE_BASE_URL", google.url)
    assert await ask("google/gemini-1.0-pro") == "Hello!"
    assert google.last.path == "/v1beta/models/gemini-1.0-pro:generateContent"
    assert google.last.headers["x-goog-api-key"] == "g-key"


async def test_mistral_key_and_base_url(
    mistral: FakeMistral, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "m-key")
    monkeypatch.setenv("MISTRAL_BASE_URL", mistral.url)
    assert await ask("mistral/mistral-large-latest") == "Hello!"
    assert mistral.last.path == "/v1/chat/completions"
    assert mistral.last.headers["authorization"] == "Bearer m-key"


# -- Azure AI ------------------------------------------------------------------------------


async def test_azure_openai_variables_map_like_the_azure_client(
    openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # api_key <- AZUREAI_OPENAI_API_KEY, azure_endpoint <- AZUREAI_OPENAI_BASE_URL,
    # organization <- OPENAI_ORG_ID, api_version <- OPENAI_API_VERSION
    monkeypatch.setenv("AZUREAI_OPENAI_API_KEY", "az-key")
    monkeypatch.setenv("AZUREAI_OPENAI_BASE_URL", openai.url)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-7")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-06-01")
    assert await ask("openai/gpt4-1106-preview-ythre") == "4"
    last = openai.last
    assert last.path == "/openai/deployments/gpt4-1106-preview-ythre/chat/completions"
    assert last.query == {"api-version": "2024-06-01"}
    assert last.headers["api-key"] == "az-key"
    assert last.headers["openai-organization"] == "org-7"
    assert "authorization" not in last.headers


@pytest.mark.parametrize("base_var", ["AZUREAI_MISTRAL_BASE_URL", "AZURE_MISTRAL_BASE_URL"])
async def test_azure_mistral_base_url_variables(
    mistral: FakeMistral, monkeypatch: pytest.MonkeyPatch, base_var: str
) -> None:
    monkeypatch.setenv("AZURE_MISTRAL_API_KEY", "az-m")
    monkeypatch.setenv(base_var, mistral.url)
    assert await ask("mistral/mistral-large-ctwi") == "Hello!"
    assert mistral.last.path == "/v1/chat/completions"
    assert mistral.last.headers["authorization"] == "Bearer az-m"
    assert mistral.last.body["model"] == "mistral-large-ctwi"


async def test_azure_mistral_key_without_endpoint_names_both_variables() -> None:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AZURE_MISTRAL_API_KEY", "az-m")
        with pytest.raises(ConfigError, match="AZURE_MISTRAL_BASE_URL \\(or AZUREAI_MISTRAL_BASE"):
            get_model("mistral/mistral-large-ctwi")


async def test_azureai_other_models(openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREAI_API_KEY", "key")
    monkeypatch.setenv("AZUREAI_BASE_URL", openai.url)
    assert await ask("azureai/llama-2-70b-chat-wnsnw") == "4"
    assert openai.last.headers["api-key"] == "key"
    assert openai.last.body["model"] == "llama-2-70b-chat-wnsnw"


# -- vLLM server through the openai provider -------------------------------------------------


async def test_vllm_server_via_openai_base_url(
    openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{openai.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "server-key")
    assert await ask("openai/meta-llama/Meta-Llama-3-8B-Instruct") == "4"
    assert openai.last.body["model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert openai.last.headers["authorization"] == "Bearer server-key"


# -- selecting the model: --model, eval(model=), INSPECT_EVAL_MODEL ---------------------------


@task
def security_guide() -> Task:
    return Task([Sample(input="2+2?", target="4", id=1)])


async def test_inspect_eval_model_selects_the_model(
    openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INSPECT_EVAL_MODEL", "openai/gpt-4")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("INSPECT_EVAL_MODEL_BASE_URL", f"{openai.url}/v1")
    assert get_model().name == "openai/gpt-4"
    [result] = await asyncio.to_thread(
        eval, security_guide, log_dir=tmp_path, display=False, temperature=0.9
    )
    assert (result.model, result.status) == ("openai/gpt-4", "success")
    assert openai.last.body["temperature"] == 0.9


async def test_gauge_model_wins_over_inspect_eval_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_EVAL_MODEL", "openai/gpt-4")
    monkeypatch.setenv("GAUGE_MODEL", "mock/test")
    assert get_model().name == "mock/test"


async def test_eval_takes_generate_config_fields_as_keywords(
    google: FakeGoogle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # eval(security_guide, model="google/gemini-1.0-pro", max_connections=20)
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    monkeypatch.setenv("GOOGLE_BASE_URL", google.url)
    [result] = await asyncio.to_thread(
        eval,
        security_guide,
        model="google/gemini-1.0-pro",
        max_connections=20,
        max_tokens=7,
        log_dir=tmp_path,
        display=False,
    )
    assert result.status == "success"
    assert google.last.body["generationConfig"]["maxOutputTokens"] == 7
    header = orjson.loads(Path(result.journal).read_bytes().splitlines()[0])
    assert "max_connections" in orjson.dumps(header).decode()


TASK_FILE = """
from gauge import Task, task
from gauge.dataset import Sample

@task
def security_guide() -> Task:
    return Task([Sample(input="2+2?", target="4", id=1)])
"""


async def test_command_line_model_and_temperature(
    openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # inspect eval security_guide --model openai/gpt-4 --temperature 0.9
    (tmp_path / "security_guide.py").write_text(TASK_FILE)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{openai.url}/v1")
    argv = ["eval", str(tmp_path / "security_guide.py"), "--model", "openai/gpt-4"]
    argv += ["--temperature", "0.9", "--log-dir", str(tmp_path / "logs"), "--no-display"]
    assert await _main(argv) == 0
    assert openai.last.body["temperature"] == 0.9 and openai.last.body["model"] == "gpt-4"


async def _main(argv: list[str]) -> int:
    def run() -> int:
        try:
            main(argv)
        except SystemExit as ex:
            return int(ex.code or 0)
        return 0

    return await asyncio.to_thread(run)


# -- model-specific configuration: the task function's `model` argument --------------------


@task
def popularity(model: Model) -> Task:
    config = GenerateConfig()
    if "gpt" in model.name or "gemini" in model.name:
        config = GenerateConfig(temperature=0.9)
    elif "claude" in model.name:
        config = GenerateConfig(temperature=0.8)
    return Task(
        [Sample(input="Is it popular?", target="yes", id=1)],
        plan=[system_message("Answer yes or no."), generate()],  # Inspect's older name
        config=config,
    )


async def test_task_function_receives_each_evaluated_model(
    openai: FakeOpenAI, anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{openai.url}/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic.url)
    results = await asyncio.to_thread(
        eval,
        popularity,
        model=["openai/gpt-4", "anthropic/claude-2.1"],
        log_dir=tmp_path,
        display=False,
    )
    assert [(r.task, r.status) for r in results] == [("popularity", "success")] * 2
    assert openai.last.body["temperature"] == 0.9
    assert openai.last.body["messages"][0] == {"role": "system", "content": "Answer yes or no."}
    assert anthropic.last.body["temperature"] == 0.8
    assert anthropic.last.body["system"][0]["text"] == "Answer yes or no."


POPULARITY_FILE = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.model import GenerateConfig

@task
def popularity(model):
    temperature = 0.9 if "gpt" in model.name else 0.8
    config = GenerateConfig(temperature=temperature)
    return Task([Sample(input="x", target="4", id=1)], config=config)
"""


async def test_command_line_task_with_a_model_argument(
    openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # inspect eval popularity.py --model openai/gpt-4
    (tmp_path / "popularity.py").write_text(POPULARITY_FILE)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{openai.url}/v1")
    argv = ["eval", str(tmp_path / "popularity.py"), "--model", "openai/gpt-4"]
    argv += ["--epochs", "2", "--epochs-reducer", "max"]
    argv += ["--log-dir", str(tmp_path / "logs"), "--no-display"]
    assert await _main(argv) == 0
    assert [r.body["temperature"] for r in openai.requests] == [0.9, 0.9]
    [journal] = (tmp_path / "logs").glob("*.jsonl")
    header = orjson.loads(journal.read_bytes().splitlines()[0])
    assert header["task"]["spec"] == f"{tmp_path / 'popularity.py'}@popularity"
    assert header["task"]["epoch_reducer"] == "max"  # set on the task before it was built


def test_task_takes_plan_or_solver_not_both() -> None:
    with pytest.raises(TaskError, match="give solver= or plan="):
        Task([Sample(input="x", id=1)], solver=generate(), plan=[generate()])


async def test_model_argument_is_not_a_task_argument(tmp_path: Path) -> None:
    path = tmp_path / "pop.py"
    path.write_text(
        "from gauge import Task, task\nfrom gauge.dataset import Sample\n\n"
        "@task\ndef pop(model):\n    return Task([Sample(input='x', id=1)])\n"
    )
    with pytest.raises(TaskError, match="receives the model being evaluated as `model`"):
        load_task(str(path), {"model": "openai/gpt-4"})
    deferred = load_task(str(path))
    assert isinstance(deferred, TaskForModel)
    with pytest.raises(TaskError, match="known only once it is built for a model"):
        deferred.dataset  # noqa: B018
    built = deferred.build(get_model("mock/pop"))
    assert (built.name, built.spec, len(built.dataset)) == ("pop", f"{path}@pop", 1)


# -- helper models ---------------------------------------------------------------------------


async def test_helper_model_with_its_own_config(
    anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic.url)
    grader = get_model(
        "anthropic/claude-2.1", config=GenerateConfig(temperature=0.9, max_connections=10)
    )
    async with grader:
        await grader.generate("grade this")
    assert anthropic.last.body["temperature"] == 0.9
    assert grader.config.max_connections == 10


# -- model args forwarded to the SDK clients -------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "together", "ollama"])
async def test_asyncopenai_args_mean_what_the_client_makes_of_them(
    openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    monkeypatch.setenv(f"{provider.upper()}_API_KEY", "k")
    monkeypatch.setenv(f"{provider.upper()}_BASE_URL", f"{openai.url}/v1")
    await ask(
        f"{provider}/m",
        default_headers={"X-Team": "evals"},
        default_query={"tenant": "t1"},
        organization="org-1",
        project="proj-2",
    )
    last = openai.last
    assert last.headers["x-team"] == "evals"
    assert last.headers["openai-organization"] == "org-1"
    assert last.headers["openai-project"] == "proj-2"
    assert last.query == {"tenant": "t1"}
    # client arguments, not request fields
    assert not {"default_headers", "default_query", "organization", "project"} & set(last.body)


async def test_asyncanthropic_args(
    anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic.url)
    await ask(
        "anthropic/claude-2.1", default_headers={"anthropic-beta": "x"}, default_query={"a": "1"}
    )
    assert anthropic.last.headers["anthropic-beta"] == "x"
    assert anthropic.last.query == {"a": "1"}


async def test_anthropic_auth_token_is_the_key(
    anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic.url)
    await ask("anthropic/claude-2.1", auth_token="tok-1")
    assert anthropic.last.headers["x-api-key"] == "tok-1"
    assert "auth_token" not in anthropic.last.body


async def test_genai_configure_args(google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    host = google.url.removeprefix("http://")
    await ask(
        "google/gemini-1.0-pro",
        transport="rest",
        client_options={"api_endpoint": f"http://{host}"},
        default_metadata=[("x-goog-user-project", "p1")],
    )
    assert google.last.headers["x-goog-user-project"] == "p1"
    assert google.last.path == "/v1beta/models/gemini-1.0-pro:generateContent"


def test_grpc_transport_is_refused_with_the_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    # inspect eval popularity --model google/gemini-1.0-pro -M transport=grpc
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    with pytest.raises(ConfigError, match=r"REST only.*remove transport, or give transport=rest"):
        get_model("google/gemini-1.0-pro", transport="grpc")


async def test_mistral_client_endpoint_is_the_base_url(
    mistral: FakeMistral, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "m")
    assert await ask("mistral/mistral-large-latest", endpoint=mistral.url) == "Hello!"
    assert mistral.last.path == "/v1/chat/completions"


@pytest.mark.parametrize(
    ("provider", "arg", "hint"),
    [
        ("openai", "http_client", "-M proxy=URL"),
        ("openai", "websocket_base_url", "realtime"),
        ("anthropic", "http_client", "-M proxy=URL"),
        ("mistral", "max_concurrent_requests", "max_connections"),
        ("google", "http_client", "-M proxy=URL"),
    ],
)
def test_client_args_gauge_cannot_honour_are_refused(
    monkeypatch: pytest.MonkeyPatch, provider: str, arg: str, hint: str
) -> None:
    monkeypatch.setenv(f"{provider.upper()}_API_KEY", "k")
    with pytest.raises(
        ConfigError, match=f"-M {arg} is not taken by provider '{provider}'.*{hint}"
    ):
        args: dict[str, Any] = {arg: "x"}
        get_model(f"{provider}/m", **args)


def test_default_headers_must_be_a_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with pytest.raises(ConfigError, match="default_headers must be a mapping"):
        get_model("openai/gpt-4", default_headers="X-Team: evals")


async def test_timeout_and_max_retries_are_generation_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    model = get_model("openai/gpt-4", timeout=30, max_retries=2)
    assert (model.config.timeout, model.config.max_retries) == (30.0, 2)
    assert "timeout" not in model.api.model_args
