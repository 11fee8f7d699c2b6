"""An lm-evaluation-harness model, `gauge`, that sends every request through gauge.

    lm_eval.simple_evaluate(model="gauge", model_args="model=hf/gauge-tiny", tasks=[...])
    python -m gauge.integrations.lm_eval_model --model gauge --model_args model=hf/gauge-tiny ...

lm-eval (0.4) finds models only in its own registry and loads no plugins, so the
`gauge` model is registered when this module is imported: by your script, or by
running lm-eval's command line through this module (the second line above, which
takes exactly lm-eval's flags). lm-eval fills its registry with its own models only
when the registry is empty, so this module fills it first: `hf`, `vllm`, ... stay there.

`generate_until`, `loglikelihood` and `loglikelihood_rolling` go to gauge's Model
(its batching, retries, rate control, cache and cost), with lm-eval's semantics
(gauge.model.scoring). A `generate_until` context is sent as one user message (as
lm-eval's chat-completions models do); with `--apply_chat_template` the turns are
sent as they are. Scoring takes raw text, so it cannot follow a chat template.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import lm_eval.models  # noqa: F401  lm-eval's own models, registered before ours (see below)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from gauge.errors import ConfigError, UnsupportedFeature
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessage, ChatMessageUser
from gauge.model.model import Model
from gauge.model.sync import messages_from_dicts, run_sync

_CHAT = "\x00gauge-chat:"
"""Marks a context that `apply_chat_template` wrote: the turns, as JSON."""

_GEN_KWARGS = {"until", "max_gen_toks", "do_sample", "temperature", "top_p", "top_k", "seed"}
_PLACEMENT_ARGS = ("batch_size", "max_batch_size", "device")
"""lm-eval's --batch_size, --max_batch_size and --device (its command line always passes
them, device "cuda" by default): gauge batches by itself (dynamic batches, adaptive
concurrency) and places a local model by its own model arg (`--model_args ...,device=cpu`),
so these are taken and not used; they change speed, never results."""


@register_model("gauge")
class GaugeLM(LM):  # type: ignore[misc]  # lm_eval ships no type information
    """lm-eval's LM over a gauge Model: `--model gauge --model_args model=<gauge model>`."""

    def __init__(
        self,
        model: str | None = None,
        pretrained: str | None = None,
        max_gen_toks: int | str = 256,
        **model_args: Any,
    ) -> None:
        super().__init__()
        name = model or pretrained
        if not name:
            raise ConfigError(
                "lm-eval --model gauge needs the gauge model: --model_args model=hf/gauge-tiny "
                "(any provider/name gauge knows)"
            )
        self.max_gen_toks = int(max_gen_toks)
        self.model: Model = get_model(name, **model_args)

    @classmethod
    def create_from_arg_string(
        cls, arg_string: str, additional_config: dict[str, Any] | None = None
    ) -> GaugeLM:
        """From `--model_args` (lm-eval's placement flags are left out: `_PLACEMENT_ARGS`)."""
        from lm_eval.utils import simple_parse_args_string

        return cls(**simple_parse_args_string(arg_string))

    @classmethod
    def create_from_arg_obj(
        cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None
    ) -> GaugeLM:
        """From a dict of model args (lm-eval's placement flags are left out)."""
        return cls(**arg_dict)

    @property
    def tokenizer_name(self) -> str:
        """What lm-eval's cache keys chat-templated requests on."""
        return f"gauge/{self.model.name}"

    def chat_template(self, chat_template: bool | str = False) -> str:
        """gauge renders turns with the model's own template; there is no text to show."""
        return ""

    def apply_chat_template(
        self, chat_history: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> str:
        """Keep the turns (as JSON): gauge sends them as messages, templated by the model."""
        return _CHAT + json.dumps(chat_history)

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Each (context, gen_kwargs): text up to the first `until` string."""
        jobs = [_generation(r.args[0], r.args[1], self.max_gen_toks) for r in requests]
        return run_sync(self._generate_all(jobs))

    async def _generate_all(
        self, jobs: list[tuple[list[ChatMessage], GenerateConfig]]
    ) -> list[str]:
        outputs = await asyncio.gather(*(self.model.generate(m, config=c) for m, c in jobs))
        return [
            _cut(o.completion, c.stop_seqs or []) for o, (_, c) in zip(outputs, jobs, strict=True)
        ]

    def loglikelihood(
        self, requests: list[Any], disable_tqdm: bool = False
    ) -> list[tuple[float, bool]]:
        """(summed logprob, is greedy) of each (context, continuation)."""
        pairs = [(_raw(r.args[0]), r.args[1]) for r in requests]
        return run_sync(self.model.loglikelihood(pairs))

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Summed logprob of each whole text (perplexity tasks)."""
        return run_sync(self.model.loglikelihood_rolling([_raw(r.args[0]) for r in requests]))


def _raw(context: str) -> str:
    if context.startswith(_CHAT):
        raise UnsupportedFeature(
            "loglikelihood with --apply_chat_template cannot go through gauge (scoring takes "
            "raw text); run the task without --apply_chat_template"
        )
    return context


def _generation(
    context: str, gen_kwargs: dict[str, Any], default_max: int
) -> tuple[list[ChatMessage], GenerateConfig]:
    """A generate_until request as gauge messages and config."""
    unknown = sorted(set(gen_kwargs) - _GEN_KWARGS)
    if unknown:
        raise ConfigError(
            f"generation_kwargs {', '.join(unknown)} cannot go through gauge; it takes "
            f"{', '.join(sorted(_GEN_KWARGS))}"
        )
    until = gen_kwargs.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    fields: dict[str, Any] = {
        "max_tokens": int(gen_kwargs.get("max_gen_toks") or default_max),
        "stop_seqs": until or None,
        # lm-eval's do_sample=False (its default) is greedy decoding.
        "temperature": float(gen_kwargs.get("temperature") or 0.0)
        if gen_kwargs.get("do_sample")
        else 0.0,
    }
    for name in ("top_p", "top_k", "seed"):
        if gen_kwargs.get(name) is not None:
            fields[name] = gen_kwargs[name]
    if context.startswith(_CHAT):
        messages = messages_from_dicts(json.loads(context.removeprefix(_CHAT)))
    else:
        messages = [ChatMessageUser(content=context)]
    return messages, GenerateConfig.model_validate(
        {k: v for k, v in fields.items() if v is not None}
    )


def _cut(text: str, until: list[str]) -> str:
    # lm-eval returns the text before the first stop string, whoever stopped the model.
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    return text


if __name__ == "__main__":  # lm-eval's command line, with the gauge model registered
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
