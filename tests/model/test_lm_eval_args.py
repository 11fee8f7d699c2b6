"""lm-eval's model-argument names: mapping, conversion, conflicts and rejection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gauge.errors import ConfigError
from gauge.model import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ToolChoice,
    ToolInfo,
    get_model,
    modelapi,
)
from gauge.model.factory import model_from_config
from gauge.model.lm_eval_args import check_conflicts, resolve, split_base_url, takes
from gauge.model.providers.template import TemplateAPI
from gauge.model.registry import unregister


class PlainAPI(ModelAPI):
    """Takes no tokenizer and no batch_size."""

    api_key_vars = ()
    honours = frozenset({"max_tokens"})

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        return ModelOutput.from_content(self.model_name, "ok")


class BatchedAPI(TemplateAPI):
    """A template provider: takes batch_size, num_concurrent, tokenizer, max_gen_toks."""

    def create_payload(self, messages: Any, **kwargs: Any) -> dict[str, Any]:
        return {"prompts": messages}


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    modelapi("plain")(PlainAPI)
    modelapi("batched")(BatchedAPI)
    yield
    unregister("plain")
    unregister("batched")


@pytest.mark.parametrize(
    ("arg", "raw", "field", "value"),
    [
        ("num_concurrent", "4", "max_connections", 4),
        ("max_retries", "0", "max_retries", 0),
        ("max_retries", 3, "max_retries", 3),
        ("timeout", "30", "timeout", 30.0),
        ("timeout", 2.5, "timeout", 2.5),
        ("max_gen_toks", "64", "max_tokens", 64),
    ],
)
def test_config_args_become_the_models_settings(arg: str, raw: Any, field: str, value: Any) -> None:
    model = get_model("plain/x", **{arg: raw})
    assert getattr(model.config, field) == value
    assert arg not in model.api.model_args  # consumed, not passed on


def test_base_url_arg_is_the_base_url() -> None:
    base_url, args, _ = resolve(
        PlainAPI, None, {"base_url": " http://127.0.0.1:8000/v1", "x": 1}, GenerateConfig()
    )
    assert base_url == "http://127.0.0.1:8000/v1"
    assert args == {"x": 1}
    model = model_from_config({"model": "plain/x", "base_url": "http://127.0.0.1:8000/v1"})
    assert model.api.base_url == "http://127.0.0.1:8000/v1"


def test_base_url_given_twice_must_agree() -> None:
    assert split_base_url("http://h:1/v1/", {"base_url": "http://h:1/v1"}) == (
        "http://h:1/v1/",
        {},
    )
    assert split_base_url(None, {"n": 1}) == (None, {"n": 1})
    with pytest.raises(ConfigError, match="-M base_url=http://b conflicts with base_url http://a"):
        split_base_url("http://a", {"base_url": "http://b"})
    with pytest.raises(ConfigError, match="must be a URL"):
        split_base_url(None, {"base_url": 5})


@pytest.mark.parametrize(
    ("arg", "raw", "message"),
    [
        ("num_concurrent", "four", "-M num_concurrent='four' must be a number"),
        ("num_concurrent", "0", "-M num_concurrent=0 must be a whole number >= 1"),
        ("num_concurrent", "2.5", "-M num_concurrent=2.5 must be a whole number >= 1"),
        ("max_retries", "-1", "-M max_retries=-1 must be a whole number >= 0"),
        ("max_retries", True, "-M max_retries=True must be a number"),
        ("timeout", "0", "-M timeout=0 must be a number of seconds > 0"),
        ("timeout", "inf", "-M timeout=inf must be a finite number"),
        ("max_gen_toks", "lots", "-M max_gen_toks='lots' must be a number"),
        ("batch_size", "auto", "-M batch_size='auto' must be a number"),
        ("tokenizer", "", "-M tokenizer= is empty"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_arg(arg: str, raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_model("batched/x", **{arg: raw})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_clash_with_the_same_setting_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"-M num_concurrent=4 conflicts with max_connections=8"):
        get_model("plain/x", config={"max_connections": 8}, num_concurrent=4)
    with pytest.raises(ConfigError, match=r"-M max_gen_toks=5 conflicts with max_tokens=6"):
        get_model("batched/x", config={"max_tokens": 6}, max_gen_toks=5)
    agreed = get_model("plain/x", config={"max_retries": 2}, max_retries="2")
    assert agreed.config.max_retries == 2


def test_check_conflicts_compares_with_the_runs_settings() -> None:
    check_conflicts({"num_concurrent": 8}, GenerateConfig(max_connections=8))
    check_conflicts({"timeout": 5}, GenerateConfig())
    with pytest.raises(ConfigError, match="--max-connections"):
        check_conflicts({"num_concurrent": "4"}, GenerateConfig(max_connections=8))


def test_providers_without_tokenizer_or_batch_size_reject_them() -> None:
    for arg, raw in (("tokenizer", "/models/tok"), ("batch_size", "8")):
        with pytest.raises(ConfigError) as info:
            get_model("plain/x", **{arg: raw})
        message = str(info.value)
        assert message.startswith(f"provider 'plain' does not take -M {arg}; remove it")
        assert "batched" in message  # names providers that do take it
        assert "plain" not in message.split("take it:")[1]


def test_template_providers_keep_their_args_converted() -> None:
    model = get_model("batched/x", batch_size="4", num_concurrent="2", max_gen_toks="9")
    api = model.api
    assert isinstance(api, BatchedAPI)
    assert (api.batch_size, api.num_concurrent, api.max_gen_toks) == (4, 2, 9)
    assert model.config.max_tokens == 9
    assert model.config.max_connections is None  # num_concurrent counts calls here
    assert api.max_connections() == 8  # 2 calls of 4 requests in flight


def test_scoring_providers_take_tokenizer_and_batch_size() -> None:
    model = get_model("mock/x", batch_size="3")
    assert model.api.model_args["batch_size"] == 3
    assert takes(type(model.api), "tokenizer")
    assert not takes(PlainAPI, "tokenizer")


def test_model_config_files_use_the_same_names() -> None:
    model = model_from_config({"model": "plain/x", "num_concurrent": "3", "timeout": 9})
    assert model.config.max_connections == 3
    assert model.config.timeout == 9.0


def test_resolve_leaves_other_args_alone() -> None:
    base_url, args, config = resolve(
        PlainAPI, None, {"colour": "red", "max_retries": "1"}, GenerateConfig(seed=3)
    )
    assert base_url is None
    assert args == {"colour": "red"}
    assert config.max_retries == 1
    assert config.seed == 3
