"""hf provider end to end on a tiny random-weight Llama saved to disk.

The model has a character-level tokenizer, so one character is one token, which
makes token counts, stop sequences and logprob strings easy to check exactly.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gauge.errors import ConfigError, GaugeError, MissingExtra, ModelError  # noqa: E402
from gauge.model.config import GenerateConfig  # noqa: E402
from gauge.model.factory import get_model  # noqa: E402
from gauge.model.messages import ChatMessage, ChatMessageSystem, ChatMessageUser  # noqa: E402
from gauge.model.model import Model  # noqa: E402
from gauge.model.providers import hf  # noqa: E402
from gauge.model.providers.hf import HuggingFaceAPI, loading  # noqa: E402
from gauge.model.tools import ToolInfo  # noqa: E402

SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHARS = ["\t", "\n", "\r"] + [chr(c) for c in range(32, 127)]
TEMPLATE = (
    "{%- for m in messages -%}<|{{ m['role'] }}|>{{ m['content'] }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
PROMPTS = ["a", "What is 12+7?", "hello there, model", "zz", "0123456789" * 3, "Q"]


def save_tiny_llama(directory: Path, seed: int = 0) -> Path:
    """A 2-layer random Llama with a character tokenizer, saved with save_pretrained."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(SPECIAL + CHARS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        unk_token="<|unk|>",
        additional_special_tokens=SPECIAL[4:],
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = TEMPLATE
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=96,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        initializer_range=0.5,  # large weights: well separated logits, no argmax near-ties
        tie_word_embeddings=True,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> Iterator[tuple[Any, Any]]:
    """The same weights loaded directly, for raw `generate` and forward passes."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    yield model, tokenizer


@pytest.fixture
def model(model_dir: Path) -> Model:
    return get_model("hf/local", model_path=str(model_dir), device="cpu")


def hf_api(model: Model) -> HuggingFaceAPI:
    """The model's provider, typed as the hf provider."""
    assert isinstance(model.api, HuggingFaceAPI)
    return model.api


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def raw_greedy(reference: tuple[Any, Any], text: str, max_new_tokens: int) -> list[int]:
    """Unbatched greedy ids from transformers itself, EOS included if generated."""
    model, tokenizer = reference
    ids = torch.tensor([prompt_ids(tokenizer, text)])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=2,
        )
    new = out[0, ids.shape[1] :].tolist()
    return new[: new.index(2) + 1] if 2 in new else new


def greedy(max_tokens: int = 8, **fields: Any) -> GenerateConfig:
    return GenerateConfig(max_tokens=max_tokens, **fields)


async def test_batched_greedy_equals_unbatched_transformers(
    model: Model, reference: tuple[Any, Any]
) -> None:
    before = len(hf_api(model).engine.batch_sizes)
    outputs = await asyncio.gather(*(model.generate(p, config=greedy(12)) for p in PROMPTS))
    # All six arrived together: one left-padded batch.
    assert list(hf_api(model).engine.batch_sizes)[before:] == [len(PROMPTS)]
    tokenizer = reference[1]
    for text, output in zip(PROMPTS, outputs, strict=True):
        expected = raw_greedy(reference, text, 12)
        assert output.usage is not None
        assert output.usage.output_tokens == len(expected)
        visible = [t for t in expected if t != 2]
        assert output.completion == tokenizer.decode(visible, skip_special_tokens=True)
        assert output.stop_reason == ("stop" if 2 in expected else "max_tokens")


async def test_each_request_alone_matches_its_batched_answer(model: Model) -> None:
    together = await asyncio.gather(*(model.generate(p, config=greedy(10)) for p in PROMPTS))
    for text, batched in zip(PROMPTS, together, strict=True):
        alone = await model.generate(text, config=greedy(10))
        assert alone.completion == batched.completion
        assert alone.usage == batched.usage


async def test_usage_counts_own_prompt_not_padding(
    model: Model, reference: tuple[Any, Any]
) -> None:
    short, long = "hi", "a much longer prompt than the other one"
    a, b = await asyncio.gather(
        model.generate(short, config=greedy(5)), model.generate(long, config=greedy(5))
    )
    tokenizer = reference[1]
    assert a.usage is not None and b.usage is not None
    assert (
        a.usage.input_tokens == len(prompt_ids(tokenizer, short)) == len(short) + 2
    )  # <|user|> ... <|assistant|>
    assert b.usage.input_tokens == len(prompt_ids(tokenizer, long)) == len(long) + 2
    assert a.usage.total_tokens == a.usage.input_tokens + a.usage.output_tokens
    assert model.usage.input_tokens >= a.usage.input_tokens + b.usage.input_tokens


async def test_max_tokens_stops_each_row_at_its_own_limit(
    model: Model, reference: tuple[Any, Any]
) -> None:
    # Find a prompt whose greedy answer runs past 6 tokens without EOS.
    text = next(p for p in PROMPTS if 2 not in raw_greedy(reference, p, 6))
    short, longer = await asyncio.gather(
        model.generate(text, config=greedy(3)), model.generate(text, config=greedy(6))
    )
    assert short.stop_reason == "max_tokens" and longer.stop_reason == "max_tokens"
    assert short.usage is not None and longer.usage is not None
    assert (short.usage.output_tokens, longer.usage.output_tokens) == (3, 6)
    assert longer.completion.startswith(short.completion)
    assert len(short.completion) == 3


async def test_stop_sequence_cuts_text_and_ends_generation_early(
    model: Model, reference: tuple[Any, Any]
) -> None:
    text = next(p for p in PROMPTS if 2 not in raw_greedy(reference, p, 8))
    full = (await model.generate(text, config=greedy(8))).completion
    stop = full[3:5]
    cut = full.index(stop)
    output = await model.generate(text, config=greedy(8, stop_seqs=[stop, "never-seen"]))
    assert output.completion == full[:cut]
    assert output.stop_reason == "stop"
    assert output.usage is not None
    # Generation ended on the token that completed the stop sequence.
    assert output.usage.output_tokens == cut + len(stop)


async def test_logprobs_match_a_direct_forward_pass(
    model: Model, reference: tuple[Any, Any]
) -> None:
    ref_model, tokenizer = reference
    text = "What is 12+7?"
    output = await model.generate(text, config=greedy(4, logprobs=True, top_logprobs=3))
    assert output.choices[0].logprobs is not None
    content = output.choices[0].logprobs.content
    generated = "".join(lp.token for lp in content)
    assert generated == output.completion
    ids = prompt_ids(tokenizer, text)
    for lp in content:
        assert lp.bytes == list(lp.token.encode())
        with torch.inference_mode():
            logits = ref_model(torch.tensor([ids])).logits[0, -1]
        expected = torch.log_softmax(logits.float(), -1)
        token_id = tokenizer.convert_tokens_to_ids(lp.token)
        assert lp.logprob == pytest.approx(float(expected[token_id]), abs=1e-4)
        assert lp.top_logprobs is not None and len(lp.top_logprobs) == 3
        best = torch.topk(expected, 3)
        assert [t.token for t in lp.top_logprobs] == tokenizer.convert_ids_to_tokens(
            best.indices.tolist()
        )
        assert lp.top_logprobs[0].logprob == pytest.approx(lp.logprob, abs=1e-6)  # greedy
        ids.append(token_id)


async def test_logprobs_name_special_tokens_literally(model: Model) -> None:
    output = await model.generate("Q", config=greedy(8, logprobs=True, top_logprobs=20))
    assert output.choices[0].logprobs is not None
    tokens = {t.token for lp in output.choices[0].logprobs.content for t in lp.top_logprobs or []}
    specials = tokens & set(SPECIAL)
    assert specials  # 20 of 106 tokens: some special tokens appear among the alternatives
    for lp in output.choices[0].logprobs.content:
        for alt in lp.top_logprobs or []:
            assert bytes(alt.bytes or []).decode() == alt.token


async def test_seeded_sampling_is_reproducible_whatever_the_batch(model: Model) -> None:
    config = GenerateConfig(max_tokens=12, temperature=1.0, seed=7)
    first = await model.generate("x", config=config)
    second = await model.generate("x", config=config)
    crowd = await asyncio.gather(
        model.generate("x", config=config),
        *(
            model.generate(p, config=GenerateConfig(max_tokens=12, temperature=1.0, seed=i))
            for i, p in enumerate(PROMPTS)
        ),
    )
    assert first.completion == second.completion == crowd[0].completion
    others = {
        c.completion
        for c in await asyncio.gather(
            *(
                model.generate("x", config=GenerateConfig(max_tokens=12, temperature=1.0, seed=s))
                for s in (1, 2, 3)
            )
        )
    }
    assert len(others | {first.completion}) >= 3  # different seeds, different samples


async def test_temperature_zero_is_greedy_even_with_a_seed(model: Model) -> None:
    plain = await model.generate("zz", config=greedy(10))
    seeded = await model.generate("zz", config=greedy(10, temperature=0.0, seed=3, top_p=0.5))
    assert seeded.completion == plain.completion


async def test_top_k_one_samples_the_greedy_answer(model: Model) -> None:
    plain = await model.generate("zz", config=greedy(10))
    sampled = await model.generate("zz", config=greedy(10, temperature=1.5, top_k=1, seed=4))
    assert sampled.completion == plain.completion


async def test_logit_bias_forces_a_token(model: Model, reference: tuple[Any, Any]) -> None:
    token = reference[1].convert_tokens_to_ids("#")
    output = await model.generate("zz", config=greedy(5, logit_bias={token: 100}))
    assert output.completion == "#####"


async def test_num_choices_returns_independent_samples(model: Model) -> None:
    output = await model.generate(
        "x", config=GenerateConfig(max_tokens=6, temperature=1.0, seed=11, num_choices=3)
    )
    assert len(output.choices) == 3
    assert output.usage is not None
    assert output.usage.input_tokens == len("x") + 2  # counted once, not per choice
    assert len({c.message.text for c in output.choices}) > 1


async def test_system_message_goes_through_the_chat_template(
    model: Model, reference: tuple[Any, Any]
) -> None:
    messages: list[ChatMessage] = [
        ChatMessageSystem(content="be brief"),
        ChatMessageUser(content="hi"),
    ]
    output = await model.generate(messages, config=greedy(3))
    assert output.usage is not None
    rendered = "<|system|>be brief<|user|>hi<|assistant|>"
    assert output.usage.input_tokens == len(reference[1](rendered)["input_ids"])


async def test_model_info_and_honoured_fields(model: Model) -> None:
    info = model.info()
    assert info["provider"] == "hf"
    assert {"temperature", "seed", "stop_seqs", "logprobs", "top_logprobs"} <= set(info["honours"])
    assert model.api.max_connections() == 32


async def test_loading_and_generation_run_off_the_event_loop(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real_load = loading.load

    def recording_load(spec: loading.LoadSpec) -> loading.Loaded:
        threads.append(threading.current_thread().name)
        return real_load(spec)

    monkeypatch.setattr(loading, "load", recording_load)
    # A distinct load setting, so this test gets its own engine and really loads.
    fresh = get_model("hf/local", model_path=str(model_dir), device="cpu", dtype="float32")
    output = await fresh.generate("hi", config=greedy(2))
    assert output.usage is not None and output.usage.input_tokens == 4
    assert threads == ["gauge-hf_0"]
    assert threading.current_thread().name != threads[0]
    await fresh.close()


async def test_providers_with_the_same_weights_share_one_engine(model_dir: Path) -> None:
    a = get_model("hf/local", model_path=str(model_dir), device="cpu", config=greedy(3))
    b = get_model("hf/local", model_path=str(model_dir), device="cpu", config=greedy(4))
    assert a is not b and hf_api(a).engine is hf_api(b).engine
    assert a.api.connection_key() == b.api.connection_key()
    other = get_model("hf/local", model_path=str(model_dir), device="cpu", dtype="float16")
    assert other.api.connection_key() != a.api.connection_key()


# -- errors: one line, saying what to do --


def test_missing_directory_fails_when_the_model_is_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        get_model(f"hf/{tmp_path / 'nope'}")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="-M model_path=DIR"):
        get_model("hf/local")
    with pytest.raises(ConfigError, match=r"tokenizer_path '\./missing-dir/' does not exist"):
        get_model("hf/local", model_path=str(tmp_path), tokenizer_path="./missing-dir/")


def test_bad_model_args_are_one_line_errors(model_dir: Path) -> None:
    with pytest.raises(ConfigError, match="dtype=float8 is not known"):
        get_model("hf/local", model_path=str(model_dir), dtype="float8")
    with pytest.raises(ConfigError, match="trust_remote_code=maybe is not a boolean"):
        get_model("hf/local", model_path=str(model_dir), trust_remote_code="maybe")
    with pytest.raises(ConfigError, match="only for hf/local"):
        get_model("hf/gpt2", model_path=str(model_dir))


async def test_unavailable_hub_id_says_so_in_one_line() -> None:
    model = get_model("hf/no-such-org/no-such-model-xyz", local_files_only=True, device="cpu")
    with pytest.raises(ConfigError) as info:
        await model.generate("hi", config=GenerateConfig(max_retries=0))
    message = str(info.value)
    assert "not a local directory and not available offline" in message
    assert "hf download no-such-org/no-such-model-xyz" in message
    assert "\n" not in message
    await model.close()


async def test_unavailable_device_is_a_clear_error(model_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    model = get_model("hf/local", model_path=str(model_dir), device="cuda")
    with pytest.raises(ConfigError, match="no CUDA GPU is visible; use -M device=cpu"):
        await model.generate("hi", config=GenerateConfig(max_retries=0))
    await model.close()


async def test_tools_and_images_are_refused(model: Model) -> None:
    from gauge.model.content import ContentImage, ContentText

    tool = ToolInfo(name="add", description="add numbers")
    with pytest.raises(ConfigError, match="does not support tools"):
        await model.generate("hi", tools=[tool])
    image = ChatMessageUser(
        content=[ContentText(text="what is this"), ContentImage(image="https://x/y.png")]
    )
    with pytest.raises(ConfigError, match="text only; remove the image content"):
        await model.generate([image], config=GenerateConfig(max_retries=0))


def test_missing_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(MissingExtra) as info:
        get_model("hf/local", model_path=str(model_dir))
    assert str(info.value) == ("provider 'hf' needs 'transformers': pip install 'gauge[hf]'")
    assert isinstance(info.value, GaugeError)
    with pytest.raises(MissingExtra, match=r"pip install 'gauge\[hf\]'"):
        loading.import_backend()


def test_bundled_name_resolves_to_package_data() -> None:
    assert loading.bundled_path().parts[-2:] == ("assets", "gauge-tiny")
    assert hf.HuggingFaceAPI.extra == "hf"


async def test_checkpoint_sampling_defaults_do_not_leak_in(
    model_dir: Path, tmp_path: Path, model: Model
) -> None:
    import json
    import shutil

    noisy = Path(shutil.copytree(model_dir, tmp_path / "noisy"))
    config = json.loads((noisy / "generation_config.json").read_text())
    config.update(do_sample=True, temperature=0.7, top_k=5, repetition_penalty=5.0)
    (noisy / "generation_config.json").write_text(json.dumps(config))
    other = get_model("hf/local", model_path=str(noisy), device="cpu")
    for text in PROMPTS[:3]:
        expected = await model.generate(text, config=greedy(10))
        got = await other.generate(text, config=greedy(10))
        assert got.completion == expected.completion
    await other.close()


def test_load_spec_routes_model_args(model_dir: Path) -> None:
    spec = loading.spec_from_args(
        "local",
        {
            "model_path": str(model_dir),
            "device": 1,
            "dtype": "bf16",
            "trust_remote_code": "true",
            "revision": "main",
            "local_files_only": "yes",
            "attn_implementation": "sdpa",
        },
    )
    assert spec.model_path == spec.tokenizer_path == str(model_dir.resolve())
    assert (spec.device, spec.dtype, spec.trust_remote_code) == ("cuda:1", "bfloat16", True)
    assert dict(spec.shared_kwargs) == {"revision": "main", "local_files_only": True}
    assert dict(spec.model_kwargs) == {"attn_implementation": "sdpa"}
    hub = loading.spec_from_args("Qwen/Qwen2.5-0.5B", {})
    assert hub.model_path == "Qwen/Qwen2.5-0.5B" and hub.device is None


def test_threads_arg_sets_torch_threads_on_load(model_dir: Path) -> None:
    assert loading.spec_from_args("gauge-tiny", {}).threads == 1  # tiny: no intra-op threads
    assert loading.spec_from_args("Qwen/Qwen2.5-0.5B", {}).threads is None
    with pytest.raises(ConfigError, match="-M threads=0 must be a whole number >= 1"):
        loading.spec_from_args("gauge-tiny", {"threads": 0})
    spec = loading.spec_from_args("local", {"model_path": str(model_dir), "threads": "1"})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        loading.load(spec)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


async def test_context_limit_caps_output_and_splits_the_batch(model: Model) -> None:
    # The test model has 96 positions; "<|user|>" + prompt + "<|assistant|>" is len + 2.
    longs = [ch * 80 for ch in "abcdefgh"]
    capped = [await model.generate(p, config=greedy(40)) for p in longs]
    limited = [o for o in capped if o.stop_reason == "model_length"]
    assert limited, "expected a prompt whose answer runs into the context limit"
    assert all(o.usage is not None and o.usage.output_tokens == 96 - 82 for o in limited)
    with pytest.raises(ModelError, match="the prompt is 102 tokens but the model's context is 96"):
        await model.generate("q" * 100, config=GenerateConfig(max_retries=0))


async def test_learned_positions_never_run_past_the_context(
    model_dir: Path, tmp_path: Path
) -> None:
    # GPT-2 looks positions up in a table of n_positions rows: one past it is an
    # IndexError. A long prompt and a short one with a large cap must not share a call.
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=96,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    gpt2 = get_model("hf/local", model_path=str(tmp_path), device="cpu")
    long, short = "a" * 80, "zz"
    alone = [
        await gpt2.generate(long, config=greedy(40)),
        await gpt2.generate(short, config=greedy(60)),
    ]
    together = await asyncio.gather(
        gpt2.generate(long, config=greedy(40)), gpt2.generate(short, config=greedy(60))
    )
    assert [o.completion for o in together] == [o.completion for o in alone]
    assert list(hf_api(gpt2).engine.batch_sizes)[-1] == 2  # one engine batch, two generate calls
    await gpt2.close()


async def test_device_auto_without_accelerate_names_the_package(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    # accelerate is in the dev extra (Inspect's own hf provider needs it): play its
    # absence, as a user with only gauge[hf] has it.
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "accelerate" else find_spec(name, *args),
    )
    model = get_model("hf/local", model_path=str(model_dir), device="auto")
    with pytest.raises(MissingExtra, match="pip install accelerate"):
        await model.generate("hi", config=GenerateConfig(max_retries=0))
    await model.close()
