"""The transformers engine's prompt work, run on the model's worker thread.

    prompt_ids     the token ids a request's prompt becomes (text, token ids, or a
                   chat through the template, optionally left open with
                   continue_final_message), checked against the vocabulary and
                   the context length
    score_jobs     a batch of requests -> their ids and, when asked, each prompt
                   token's logprob, rank and top alternatives, from one call to
                   the hf provider's `scoring.prompt_logprobs` (no second copy
                   of the forward pass lives here)
    tail_logprobs  the logprob of a generated final EOS / stop token id, which
                   the provider's generation leaves out of its logprobs

Every function here is blocking tokenizer or torch work: call it on the
engine's worker thread, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from gauge.errors import ConfigError, ModelError
from gauge.model.providers.hf import scoring
from gauge.model.providers.hf.generation import Generator
from gauge.serve.engines.base import EngineRequest, PromptLogprob, TokenizeRequest


@dataclass(slots=True)
class Job:
    """One request's prompt to tokenize, and to score when `k` is not None."""

    request: EngineRequest | TokenizeRequest
    k: int | None = None


@dataclass(slots=True)
class Scored:
    """A job's prompt ids and, when scored, each token's logprob."""

    ids: list[int]
    logprobs: list[PromptLogprob] | None = None


def vocab_size(generator: Generator) -> int:
    """Token ids the model accepts (its embedding rows, else the tokenizer's length)."""
    config = getattr(generator.loaded.model, "config", None)
    size = getattr(config, "vocab_size", None)
    return int(size) if isinstance(size, int) and size > 0 else len(generator.loaded.tokenizer)


def check_ids(ids: list[int], vocab: int, where: str = "prompt") -> None:
    """Every id is in the vocabulary (an embedding lookup would fail the whole batch)."""
    bad = next((t for t in ids if t >= vocab), None)
    if bad is not None:
        raise ConfigError(f"{where}: token id {bad} is not in the vocabulary (ids 0..{vocab - 1})")


def prompt_ids(generator: Generator, request: EngineRequest | TokenizeRequest) -> list[int]:
    """The token ids of `request`'s prompt, exactly as generation would see them."""
    tokenizer = generator.loaded.tokenizer
    special = getattr(request, "add_special_tokens", None)
    prompt = request.prompt
    if isinstance(prompt, list):
        check_ids(prompt, vocab_size(generator))
        return list(prompt)
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=special is not False)["input_ids"])
    text, template_special = chat_text(generator, request)
    use = template_special if special is None else special
    return list(tokenizer(text, add_special_tokens=use)["input_ids"])


def chat_text(generator: Generator, request: EngineRequest | TokenizeRequest) -> tuple[str, bool]:
    """(templated chat text, whether the tokenizer should add its special tokens)."""
    messages = request.messages or []
    tokenizer = generator.loaded.tokenizer
    if not request.continue_final_message or not getattr(tokenizer, "chat_template", None):
        # Without a template there is nothing to close: the turns' text is already open.
        return generator.prompt_text(messages, request.add_generation_prompt)
    turns = [{"role": m.role, "content": m.text} for m in messages]
    try:
        text: str = tokenizer.apply_chat_template(
            turns, add_generation_prompt=False, continue_final_message=True, tokenize=False
        )
    except Exception as ex:  # jinja errors, or transformers' own checks
        raise ConfigError(f"cannot build the prompt with the model's chat template: {ex}") from ex
    return text, False


def check_length(ids: list[int], limit: int | None) -> None:
    """The prompt fits the model's context (generation then caps its own output to it)."""
    if not ids:
        raise ConfigError("the prompt is empty; send some text or token ids")
    if limit is not None and len(ids) > limit:
        raise ModelError(
            f"the prompt is {len(ids)} tokens but the model's context is {limit}; "
            "shorten the prompt"
        )


def score_jobs(generator: Generator, jobs: list[Job]) -> list[Scored | BaseException]:
    """Tokenize every job, then score those that ask in one batched forward pass."""
    results: list[Scored | BaseException] = []
    for job in jobs:
        try:
            ids = prompt_ids(generator, job.request)
            if isinstance(job.request, EngineRequest):  # /tokenize reports, never refuses
                check_length(ids, generator.loaded.context_length)
            results.append(Scored(ids))
        except Exception as ex:
            results.append(ex if isinstance(ex, ConfigError | ModelError) else _wrap(ex))
    wanted = [
        (job, result)
        for job, result in zip(jobs, results, strict=True)
        if job.k is not None and isinstance(result, Scored)
    ]
    if not wanted:
        return results
    top_k = max(job.k or 0 for job, _ in wanted)
    scores = scoring.prompt_logprobs(generator.loaded, [r.ids for _, r in wanted], top_k)
    for (job, result), row in zip(wanted, scores, strict=True):
        result.logprobs = to_prompt_logprobs(generator, result.ids, row, job.k or 0)
    return results


def to_prompt_logprobs(
    generator: Generator, ids: list[int], scores: list[scoring.TokenScore], k: int
) -> list[PromptLogprob]:
    """The first token (no logprob), then each later token with its top k alternatives."""
    special = set(getattr(generator.loaded.tokenizer, "all_special_ids", []) or [])
    text = generator.token_bytes
    out = [PromptLogprob(ids[0], text(ids[0])[0], None, None, special=ids[0] in special)]
    for score in scores:
        top = [
            (token_id, text(token_id)[0], value, rank)
            for rank, (token_id, value) in enumerate(score.top[:k], start=1)
        ]
        out.append(
            PromptLogprob(
                score.token_id,
                text(score.token_id)[0],
                score.logprob,
                score.rank,
                top,
                special=score.token_id in special,
            )
        )
    return out


def tail_logprobs(
    generator: Generator, ids: list[int], count: int, k: int
) -> list[tuple[int, float, list[tuple[int, float]]]]:
    """(token id, logprob, top k (id, logprob)) of the last `count` tokens of `ids`.

    The hf provider reports no logprob for a final EOS or stop token id (it is not
    part of the text), but vLLM and OpenAI list it; lm-eval's echo scoring with
    `max_tokens: 1` drops the last logprob entry on that assumption.
    """
    rows = scoring.prompt_logprobs(generator.loaded, [ids], k)[0][-count:]
    return [(s.token_id, s.logprob, list(s.top[:k])) for s in rows]


def token_texts(generator: Generator, ids: list[int]) -> list[str]:
    """Each token's own text (its exact bytes decoded)."""
    check_ids(ids, vocab_size(generator), "tokens")
    return [generator.token_bytes(t)[0] for t in ids]


def detokenize(generator: Generator, ids: list[int]) -> str:
    """The text of `ids`, special tokens kept (vLLM's /detokenize)."""
    check_ids(ids, vocab_size(generator), "tokens")
    text: str = generator.loaded.tokenizer.decode(ids)
    return text


def _wrap(ex: Exception) -> ConfigError:
    return ConfigError(f"cannot tokenize the prompt: {ex}")
