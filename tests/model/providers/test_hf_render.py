"""Chat-template rendering of a whole batch in one call, with per-request failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_hf import save_tiny_llama  # noqa: E402

from gauge.errors import ConfigError  # noqa: E402
from gauge.model.config import GenerateConfig  # noqa: E402
from gauge.model.factory import get_model  # noqa: E402
from gauge.model.messages import ChatMessageSystem, ChatMessageUser  # noqa: E402
from gauge.model.providers.hf.generation import Generator  # noqa: E402
from gauge.model.providers.hf.loading import Loaded  # noqa: E402

# A template that refuses system messages, as some real ones do.
STRICT = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{ raise_exception('no system role here') }}{%- endif -%}"
    "<|{{ m['role'] }}|>{{ m['content'] }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


@pytest.fixture(scope="module")
def strict_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = save_tiny_llama(tmp_path_factory.mktemp("strict"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    tokenizer.chat_template = STRICT
    tokenizer.save_pretrained(directory)
    return directory


def generator(tokenizer: Any) -> Generator:
    model = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=8,
            intermediate_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    )
    return Generator(Loaded(model, tokenizer, torch.device("cpu"), None))


def turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in pairs]


def test_one_call_renders_what_a_call_each_renders(strict_dir: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(strict_dir)
    conversations = [turns(("user", f"What is {i}+{i}?")) for i in range(5)]
    conversations.append(turns(("user", "a"), ("assistant", "b"), ("user", "c")))
    calls: list[int] = []
    render_one_or_many = tokenizer.apply_chat_template

    def counting(conversation: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return render_one_or_many(conversation, **kwargs)

    gen = generator(tokenizer)
    gen.loaded.tokenizer.apply_chat_template = counting
    for add in (True, False):
        rendered = gen.render(conversations, add)
        assert len(calls) == (1 if add else 2)  # one template call for the whole batch
        expected = [
            render_one_or_many(c, add_generation_prompt=add, tokenize=False) for c in conversations
        ]
        assert rendered == [(text, False) for text in expected]
    assert rendered[0] == ("<|user|>What is 0+0?", False)


def test_a_failing_conversation_fails_alone(strict_dir: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(strict_dir)
    good = turns(("user", "hi"))
    bad = turns(("system", "be brief"), ("user", "hi"))
    rendered = generator(tokenizer).render([good, bad, good, []], True)
    assert rendered[0] == rendered[2] == ("<|user|>hi<|assistant|>", False)
    assert isinstance(rendered[1], Exception) and "no system role here" in str(rendered[1])
    assert isinstance(rendered[3], Exception)  # an empty conversation is refused, as alone


def test_without_a_template_the_turns_are_joined(strict_dir: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(strict_dir)
    tokenizer.chat_template = None
    rendered = generator(tokenizer).render([turns(("user", "a"), ("user", "b"))], True)
    assert rendered == [("a\n\nb", True)]


async def test_in_a_batch_only_the_bad_request_gets_the_error(strict_dir: Path) -> None:
    model = get_model("hf/local", model_path=str(strict_dir), device="cpu")
    config = GenerateConfig(max_tokens=4, max_retries=0)
    bad = [ChatMessageSystem(content="be brief"), ChatMessageUser(content="hi")]
    try:
        outcomes = await asyncio.gather(
            model.generate("hi", config=config),
            model.generate(bad, config=config),
            model.generate("What is 1+2?", config=config),
            return_exceptions=True,
        )
        alone = await model.generate("What is 1+2?", config=config)
    finally:
        await model.close()
    assert isinstance(outcomes[1], ConfigError)
    assert "cannot build the prompt" in str(outcomes[1]) and "no system role" in str(outcomes[1])
    first, third = outcomes[0], outcomes[2]
    assert not isinstance(first, BaseException) and not isinstance(third, BaseException)
    assert first.usage is not None and first.usage.input_tokens == 4  # <|user|> h i <|assistant|>
    assert third.completion == alone.completion and third.usage == alone.usage
