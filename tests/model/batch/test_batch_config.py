"""`batch` in GenerateConfig: how each form normalises, and what it leaves out of cache keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gauge.errors import ConfigError
from gauge.model.batch.config import BatchConfig, batch_setting
from gauge.model.cache.key import request_key
from gauge.model.cache.policy import CachePolicy
from gauge.model.config import PIPELINE_FIELDS, PROVIDER_FIELDS, GenerateConfig
from gauge.model.lm_eval_args import check_conflicts, resolve
from gauge.model.messages import ChatMessageUser
from gauge.model.providers.openai_compat.services import OpenAIAPI


def test_true_is_the_default_config() -> None:
    config = GenerateConfig(batch=True)
    assert config.batch == BatchConfig()
    assert (BatchConfig().size, BatchConfig().send_delay, BatchConfig().tick) == (100, 15.0, 15.0)
    assert BatchConfig().max_batches == 100


def test_an_int_is_the_size() -> None:
    assert GenerateConfig(batch=500).batch == BatchConfig(size=500)


def test_a_dict_uses_inspect_names() -> None:
    value = {"size": 10, "send_delay": 2, "tick": 1, "max_batches": 3, "max_size_mb": 1.5}
    batch = GenerateConfig(batch=value).batch
    assert isinstance(batch, BatchConfig)
    assert (batch.size, batch.send_delay, batch.tick, batch.max_batches) == (10, 2.0, 1.0, 3)
    assert batch.max_bytes == int(1.5 * 1024 * 1024)


def test_false_and_none_are_off() -> None:
    assert GenerateConfig(batch=False).batch is False
    assert batch_setting(GenerateConfig(batch=False).batch) is None
    assert batch_setting(GenerateConfig().batch) is None
    assert batch_setting(True) == BatchConfig()
    assert batch_setting({"size": 2}) == BatchConfig(size=2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "batch=0: give a batch size >= 1, True or False"),
        ("soon", "batch='soon': give True, False, a batch size (int) or a BatchConfig"),
        ({"sise": 3}, "batch: sise: Extra inputs are not permitted"),
        ({"tick": 0}, "batch: tick: Input should be greater than 0"),
    ],
)
def test_bad_values_say_what_to_give(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GenerateConfig(batch=value)


def test_batch_is_a_pipeline_field_and_not_in_the_cache_key() -> None:
    assert "batch" in PIPELINE_FIELDS
    assert "batch" not in PROVIDER_FIELDS
    messages = [ChatMessageUser(content="hi")]
    keys = {
        request_key("openai", "m", None, messages, [], "auto", config, CachePolicy()).digest
        for config in (GenerateConfig(), GenerateConfig(batch=True), GenerateConfig(batch=7))
    }
    assert len(keys) == 1


def test_merge_layers_batch_like_any_field() -> None:
    merged = GenerateConfig(batch=True).merge(GenerateConfig(batch=False))
    assert merged.batch is False
    assert GenerateConfig(batch=5).merge(GenerateConfig(temperature=0)).batch == BatchConfig(size=5)


def test_model_arg_batch_becomes_the_config_field() -> None:
    _, args, config = resolve(OpenAIAPI, None, {"batch": 50, "min_p": 0.1}, GenerateConfig())
    assert config.batch == BatchConfig(size=50)
    assert args == {"min_p": 0.1}


def test_model_arg_batch_that_is_bad_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^-M batch='x': batch: Value error"):
        resolve(OpenAIAPI, None, {"batch": "x"}, GenerateConfig())


def test_model_arg_and_flag_that_disagree_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"-M batch=.* conflicts with batch="):
        check_conflicts({"batch": 10}, GenerateConfig(batch=20))
    check_conflicts({"batch": 10}, GenerateConfig(batch=10))
