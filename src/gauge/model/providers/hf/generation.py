"""One batch through `model.generate`: tokenise, left-pad, generate, cut, account.

Every request in a batch may have its own settings, so a batch is always one
`generate` call, run greedily, with two per-row hooks:

* `RowSampler` (a LogitsProcessor) applies, per row, logit_bias, repetition,
  frequency and presence penalties, temperature, top_k, min_p and top_p, and
  draws the token with the row's own seeded generator (the "exponential race":
  argmax p / Exp(1) samples from p). It then leaves only the drawn token, so
  generate's argmax picks it.
  Each request has its own generator and draws for each of its rows on every
  step, so a seeded request gives the same output whatever else is in its batch.
  It also keeps the raw log-softmax of rows that asked for logprobs.
* `RowTracker` (a StoppingCriteria) ends each row on its own: at an EOS token or
  one of its stop token ids, at one of its stop sequences, or at its own
  max_tokens. It records where each row ended and why, and the logprobs of each
  generated token.

Semantics:
* temperature unset or 0 is greedy (deterministic, the evaluation default);
  top_p/top_k/seed only matter when temperature > 0.
* max_tokens defaults to the model's generation_config max_new_tokens, else 512,
  and is capped by the model's context length (stop_reason "model_length").
* Usage is exact per request: input tokens are the request's own prompt (no
  padding), output tokens are those generated up to and including EOS or the
  token that completed a stop sequence, summed over choices.
* Engine-only settings (`gauge serve`, vLLM's names): ignore_eos generates through
  EOS; skip_special_tokens / spaces_between_special_tokens choose how ids become
  text (`decoding`); a beam width runs the request as its own beam search (`beams`).
* Logprobs are the model's raw distribution (before penalties and temperature),
  for every generated token except a final EOS; each token carries its exact
  UTF-8 bytes (see `TokenBytes`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gauge.errors import ConfigError, ModelError
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.providers.hf.beams import beam_groups, search_beams
from gauge.model.providers.hf.decoding import decode_rows
from gauge.model.providers.hf.loading import Loaded
from gauge.model.providers.hf.prompts import render, template_turn
from gauge.model.providers.hf.tokens import TokenBytes

DEFAULT_MAX_TOKENS = 512


@dataclass(slots=True)
class Sampling:
    """The GenerateConfig fields the hf provider maps, normalised (read-only by use).

    Not frozen: one is built per request on the event loop, and a frozen
    dataclass pays an object.__setattr__ per field.
    """

    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    stop_token_ids: tuple[int, ...] = ()
    include_stop: bool = False
    """Keep the matched stop sequence at the end of the text (vLLM's include_stop_str_in_output)."""
    ignore_eos: bool = False
    """Generate through EOS tokens up to max_tokens (they stay in the token ids)."""
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    beams: int = 0
    """Beam width for beam search (`beams.py`); 0 is greedy or sampled decoding."""
    length_penalty: float = 1.0
    early_stopping: bool | str = False

    @classmethod
    def from_config(cls, config: GenerateConfig) -> Sampling:
        """Normalise a GenerateConfig (top_logprobs implies logprobs)."""
        top = config.top_logprobs or 0
        return cls(
            max_tokens=config.max_tokens,
            temperature=config.temperature or 0.0,
            top_p=config.top_p,
            top_k=config.top_k,
            seed=config.seed,
            n=config.num_choices or 1,
            stop=tuple(s for s in (config.stop_seqs or ()) if s),
            logprobs=bool(config.logprobs) or top > 0,
            top_logprobs=top,
            frequency_penalty=config.frequency_penalty or 0.0,
            presence_penalty=config.presence_penalty or 0.0,
            logit_bias=tuple(sorted((config.logit_bias or {}).items())),
        )

    @property
    def greedy(self) -> bool:
        """Whether tokens are picked by argmax."""
        return self.temperature == 0.0

    @property
    def needs_processor(self) -> bool:
        """Whether this request needs the per-row logits hook."""
        return (
            not self.greedy
            or self.logprobs
            or bool(self.logit_bias)
            or bool(self.frequency_penalty)
            or bool(self.presence_penalty)
            or self.repetition_penalty != 1.0
        )


@dataclass(slots=True)
class GenRequest:
    """One request as the worker receives it."""

    messages: list[ChatMessage]
    sampling: Sampling
    prompt: str | list[int] | None = None
    """A raw prompt, text or token ids, used instead of `messages` (text completions)."""
    add_generation_prompt: bool = True
    on_token: Callable[[int, int], bool] | None = None
    """Called on the worker thread with (choice index, token id) as each token is made;
    returning False ends that choice there (its listener has gone)."""


@dataclass(slots=True)
class TokenLogprob:
    """The logprob of one generated token and its top alternatives."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass(slots=True)
class GenChoice:
    """One generated alternative."""

    text: str
    token_ids: list[int]
    """Generated ids, up to and including EOS or the stop-completing token."""
    stop_reason: str
    logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class GenResult:
    """A request's choices and its exact token usage."""

    input_tokens: int
    choices: list[GenChoice] = field(default_factory=list)

    @property
    def output_tokens(self) -> int:
        """Generated tokens over all choices."""
        return sum(len(c.token_ids) for c in self.choices)


class Generator:
    """Runs batches of GenRequests on one loaded model (on the engine's worker thread)."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.token_bytes = TokenBytes(loaded.tokenizer)
        config = getattr(loaded.model, "generation_config", None)
        self.default_max_tokens = getattr(config, "max_new_tokens", None) or DEFAULT_MAX_TOKENS
        eos = getattr(config, "eos_token_id", None)
        if eos is None:
            eos = loaded.tokenizer.eos_token_id
        self.eos_ids: frozenset[int] = frozenset(
            [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        )

    def prompt_ids(self, messages: list[ChatMessage]) -> list[int]:
        """Token ids of the prompt: the chat template with the generation prompt."""
        text, special = self.prompt_text(messages)
        return list(self.loaded.tokenizer(text, add_special_tokens=special)["input_ids"])

    def prompt_text(
        self, messages: list[ChatMessage], add_generation_prompt: bool = True
    ) -> tuple[str, bool]:
        """(prompt text, whether the tokenizer should add its special tokens)."""
        turns = [template_turn(m) for m in messages]
        outcome = render(self.loaded.tokenizer, [turns], add_generation_prompt)[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def render(
        self, conversations: list[list[dict[str, str]]], add_generation_prompt: bool = True
    ) -> list[tuple[str, bool] | Exception]:
        """`prompt_text` for many conversations in one template call (see `prompts.render`)."""
        return render(self.loaded.tokenizer, conversations, add_generation_prompt)

    def run(self, requests: list[GenRequest]) -> list[GenResult | BaseException]:
        """Generate every request of a batch; a failure is returned in its slot."""
        results: list[GenResult | BaseException] = []
        texts: dict[bool, list[tuple[int, str]]] = {False: [], True: []}
        given: list[tuple[int, list[int]]] = []
        # Chats by add_generation_prompt, rendered together below.
        chats: dict[bool, list[tuple[int, list[dict[str, str]]]]] = {True: [], False: []}
        for index, request in enumerate(requests):
            try:
                if isinstance(request.prompt, list):
                    given.append((index, request.prompt))
                elif isinstance(request.prompt, str):
                    # A raw text prompt gets the tokenizer's BOS, as vLLM's completions do.
                    texts[True].append((index, request.prompt))
                else:
                    turns = [template_turn(m) for m in request.messages]
                    chats[request.add_generation_prompt].append((index, turns))
                results.append(GenResult(input_tokens=0))
            except Exception as ex:
                results.append(_as_request_error(ex))
        for add_prompt, conversations in chats.items():
            rendered = self.render([turns for _, turns in conversations], add_prompt)
            for (index, _), outcome in zip(conversations, rendered, strict=True):
                if isinstance(outcome, Exception):
                    results[index] = _as_request_error(outcome)
                else:
                    texts[outcome[1]].append((index, outcome[0]))
        rows: list[_Row] = []
        for index, ids in given:
            try:
                rows.extend(self._rows(index, ids, requests[index]))
                results[index] = GenResult(input_tokens=len(ids))
            except Exception as ex:
                results[index] = _as_request_error(ex)
        for special, entries in texts.items():
            if not entries:
                continue
            # One tokenizer call for the batch: the fast tokenizers encode lists in parallel.
            encoded = self.loaded.tokenizer(
                [text for _, text in entries], add_special_tokens=special
            )["input_ids"]
            for (index, _), ids in zip(entries, encoded, strict=True):
                try:
                    rows.extend(self._rows(index, list(ids), requests[index]))
                    results[index] = GenResult(input_tokens=len(ids))
                except Exception as ex:
                    results[index] = _as_request_error(ex)
        if rows:
            rows.sort(key=lambda row: row.request)
            self._generate_rows(rows)
            visible = [self._visible(row) for row in rows]
            answers = decode_rows(self.loaded.tokenizer, visible, [row.sampling for row in rows])
            for row, answer_ids, answer in zip(rows, visible, answers, strict=True):
                result = results[row.request]
                assert isinstance(result, GenResult)
                result.choices.append(self._choice(row, answer_ids, answer))
        return results

    def _generate_rows(self, rows: list[_Row]) -> None:
        """Every row's tokens: sampled rows in shared calls, each beam request alone."""
        plain = [row for row in rows if not row.sampling.beams]
        if plain:
            for group in context_groups(plain, self.loaded.context_length):
                self._generate(group)
        for group in beam_groups(rows):
            search_beams(self, group)

    def _rows(self, index: int, ids: list[int], request: GenRequest) -> list[_Row]:
        sampling = request.sampling
        limit = self.loaded.context_length
        if not ids:
            raise ConfigError(
                "the prompt is empty after applying the chat template; send some text"
            )
        wanted = sampling.max_tokens or self.default_max_tokens
        cap, cap_reason = wanted, "max_tokens"
        if limit is not None:
            room = limit - len(ids)
            if room <= 0:
                raise ModelError(
                    f"the prompt is {len(ids)} tokens but the model's context is {limit}; "
                    "shorten the input"
                )
            if room < wanted:
                cap, cap_reason = room, "model_length"
        rng = None
        if not sampling.greedy:
            seed = sampling.seed if sampling.seed is not None else secrets.randbits(63)
            rng = _SeededDraws(seed)
        return [
            _Row(index, ids, sampling, cap, cap_reason, rng, choice=k, on_token=request.on_token)
            for k in range(sampling.n)
        ]

    def _generate(self, rows: list[_Row]) -> None:
        import torch
        import transformers

        # transformers is untyped: hold its classes as Any.
        GenerationConfig: Any = transformers.GenerationConfig
        LogitsProcessorList: Any = transformers.LogitsProcessorList
        StoppingCriteriaList: Any = transformers.StoppingCriteriaList

        loaded = self.loaded
        tokenizer = loaded.tokenizer
        pad = tokenizer.pad_token_id
        width = max(len(r.prompt) for r in rows)
        # Left padding: every row's last prompt token sits in the same column.
        padded = [[pad] * (width - len(r.prompt)) + r.prompt for r in rows]
        flags = [[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in rows]
        input_ids = torch.tensor(padded, dtype=torch.long, device=loaded.device)
        mask = torch.tensor(flags, dtype=torch.long, device=loaded.device)

        sampler = RowSampler(rows, width) if any(r.sampling.needs_processor for r in rows) else None
        tracker = RowTracker(rows, width, self.eos_ids, tokenizer, sampler)
        # GenerateConfig alone decides the output: the sampling and penalty defaults a
        # checkpoint ships in generation_config.json are set back to neutral values
        # (generate fills every field left None from the model's own config).
        config = GenerationConfig(
            do_sample=False,
            num_beams=1,
            num_return_sequences=1,
            temperature=1.0,
            top_p=1.0,
            top_k=50,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            max_new_tokens=max(r.cap for r in rows),
            # A row that ignores EOS must not be ended by generate: RowTracker ends the others.
            # [] and not None: generate fills a None from the model's own config.
            eos_token_id=[]
            if any(r.sampling.ignore_eos for r in rows)
            else sorted(self.eos_ids) or None,
            pad_token_id=pad,
            bos_token_id=getattr(loaded.model.generation_config, "bos_token_id", None),
        )
        with torch.inference_mode():
            output = loaded.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler] if sampler else []),
                stopping_criteria=StoppingCriteriaList([tracker]),
            )
        generated = output[:, width:].tolist()
        for i, row in enumerate(rows):
            end = row.end if row.end is not None else len(generated[i])
            row.tokens = generated[i][:end]
            if row.reason is None:
                row.reason = row.cap_reason

    def _visible(self, row: _Row) -> list[int]:
        """The tokens that make up the text: all but a final EOS or stop token id.

        A stop token id stays in the text only with include_stop (as in vLLM).
        """
        tokens = row.tokens
        s = row.sampling
        if tokens and tokens[-1] in self.eos_ids and not s.ignore_eos:
            return tokens[:-1]
        if tokens and tokens[-1] in s.stop_token_ids and not s.include_stop:
            return tokens[:-1]
        return tokens

    def _choice(self, row: _Row, text_ids: list[int], text: str) -> GenChoice:
        tokens = row.tokens
        reason = row.reason or "unknown"
        if row.sampling.stop:
            cut = _first_stop(text, row.sampling.stop)
            if cut is not None:
                if row.sampling.include_stop:
                    cut += next(len(s) for s in row.sampling.stop if text.startswith(s, cut))
                text, reason = text[:cut], "stop"
        logprobs = None
        if row.sampling.logprobs:
            logprobs = [
                TokenLogprob(tok, lp, top)
                for tok, (lp, top) in zip(text_ids, row.logprobs, strict=False)
            ]
        return GenChoice(text=text, token_ids=tokens, stop_reason=reason, logprobs=logprobs)


def context_groups(rows: list[_Row], limit: int | None) -> list[list[_Row]]:
    """Split rows so no row's positions run past the context in a shared generate call.

    A finished row keeps receiving padding until its whole batch ends, so in one
    call every row must have room for the longest cap: longest prompt + largest
    cap <= limit. Usually the whole batch fits; near the context limit, long
    prompts go into their own calls (each row alone always fits).
    """
    if limit is None or max(len(r.prompt) for r in rows) + max(r.cap for r in rows) <= limit:
        return [rows]
    groups: list[list[_Row]] = []
    longest = largest = 0
    for row in sorted(rows, key=lambda r: len(r.prompt), reverse=True):
        fits = groups and max(longest, len(row.prompt)) + max(largest, row.cap) <= limit
        if not fits:
            groups.append([])
            longest = largest = 0
        groups[-1].append(row)
        longest, largest = max(longest, len(row.prompt)), max(largest, row.cap)
    return groups


@dataclass(slots=True)
class _SeededDraws:
    """One request's random stream, shared by its rows (created lazily per device)."""

    seed: int
    generator: Any = None

    def get(self, device: Any) -> Any:
        if self.generator is None:
            import torch

            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.seed)
        return self.generator


@dataclass(slots=True)
class _Row:
    request: int
    prompt: list[int]
    sampling: Sampling
    cap: int
    cap_reason: str
    draws: _SeededDraws | None
    choice: int = 0
    on_token: Callable[[int, int], bool] | None = None
    end: int | None = None
    reason: str | None = None
    tokens: list[int] = field(default_factory=list)
    logprobs: list[tuple[float, list[tuple[int, float]]]] = field(default_factory=list)


class RowSampler:
    """LogitsProcessor applying each row's own sampling settings (see module doc)."""

    def __init__(self, rows: list[_Row], width: int) -> None:
        self.rows = rows
        self.width = width
        self.logprob_index = [i for i, r in enumerate(rows) if r.sampling.logprobs]
        self.stash: Any = None
        """Raw log-softmax of the logprob rows at the current step."""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.logprob_index:
            self.stash = torch.log_softmax(scores[self.logprob_index].float(), dim=-1)
        vocab = scores.shape[-1]
        for i, row in enumerate(self.rows):
            s = row.sampling
            if not s.needs_processor or row.end is not None:
                continue
            if s.logit_bias:
                ids = torch.tensor([t for t, _ in s.logit_bias if 0 <= t < vocab], dtype=torch.long)
                bias = torch.tensor(
                    [b for t, b in s.logit_bias if 0 <= t < vocab], dtype=scores.dtype
                )
                scores[i, ids.to(scores.device)] += bias.to(scores.device)
            if s.repetition_penalty != 1.0:
                # transformers' rule over prompt and output: shrink the logit of every
                # token already seen (divide if positive, multiply if negative).
                seen = input_ids[i, self.width - len(row.prompt) :].unique()
                picked = scores[i, seen]
                scores[i, seen] = torch.where(
                    picked > 0, picked / s.repetition_penalty, picked * s.repetition_penalty
                )
            if s.frequency_penalty or s.presence_penalty:
                counts = torch.bincount(input_ids[i, self.width :], minlength=vocab)[:vocab]
                counts = counts.to(scores.dtype)
                scores[i] -= s.frequency_penalty * counts + s.presence_penalty * (counts > 0)
            if not s.greedy and row.draws is not None:
                token = _draw(scores[i], s, row.draws.get(scores.device))
                scores[i].fill_(float("-inf"))
                scores[i, token] = 0.0
        return scores


def _draw(logits: Any, s: Sampling, generator: Any) -> int:
    import torch

    logits = logits.float() / s.temperature
    if s.top_k is not None and s.top_k < logits.shape[-1]:
        kth = torch.topk(logits, s.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if s.min_p > 0.0:
        probs = probs.masked_fill(probs < s.min_p * probs.max(), 0.0)
    if s.top_p is not None and s.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always the top token).
        drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= s.top_p
        probs = probs.scatter(0, order, sorted_probs.masked_fill(drop, 0.0))
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return int(torch.argmax(probs / noise))


class RowTracker:
    """StoppingCriteria ending each row on its own and recording its logprobs."""

    def __init__(
        self,
        rows: list[_Row],
        width: int,
        eos_ids: frozenset[int],
        tokenizer: Any,
        sampler: RowSampler | None,
    ) -> None:
        self.rows = rows
        self.width = width
        self.eos_ids = eos_ids
        self.tokenizer = tokenizer
        self.sampler = sampler
        self.stop_window = [
            max(len(s) for s in r.sampling.stop) + 8 if r.sampling.stop else 0 for r in rows
        ]

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        step = input_ids.shape[1] - self.width
        last = input_ids[:, -1].tolist()
        self._record_logprobs(input_ids[:, -1])
        for i, row in enumerate(self.rows):
            if row.end is not None:
                continue
            if row.on_token is not None and not row.on_token(row.choice, last[i]):
                row.end, row.reason = step, "cancelled"
                continue
            stopped = (
                (last[i] in self.eos_ids and not row.sampling.ignore_eos)
                or last[i] in row.sampling.stop_token_ids
                or (self.stop_window[i] > 0 and self._hit_stop(input_ids[i], step, i))
            )
            if stopped:
                row.end, row.reason = step, "stop"
            elif step >= row.cap:
                row.end, row.reason = step, row.cap_reason
        done = [row.end is not None for row in self.rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _hit_stop(self, ids: Any, step: int, i: int) -> bool:
        window = min(step, self.stop_window[i])
        tail = self.tokenizer.decode(ids[-window:].tolist(), skip_special_tokens=True)
        return _first_stop(tail, self.rows[i].sampling.stop) is not None

    def _record_logprobs(self, tokens: Any) -> None:
        sampler = self.sampler
        if sampler is None or sampler.stash is None:
            return
        import torch

        index = sampler.logprob_index
        stash = sampler.stash
        chosen = stash.gather(1, tokens[index].unsqueeze(1).to(stash.device)).squeeze(1).tolist()
        k = max(self.rows[i].sampling.top_logprobs for i in index)
        top_values: list[list[float]] = []
        top_ids: list[list[int]] = []
        if k:
            top = torch.topk(stash, min(k, stash.shape[-1]), dim=-1)
            top_values, top_ids = top.values.tolist(), top.indices.tolist()
        for j, i in enumerate(index):
            row = self.rows[i]
            if row.end is not None:
                continue
            want = row.sampling.top_logprobs
            alternatives = (
                list(zip(top_ids[j][:want], top_values[j][:want], strict=True)) if want else []
            )
            row.logprobs.append((chosen[j], alternatives))
        sampler.stash = None


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    found = [i for s in stops if (i := text.find(s)) >= 0]
    return min(found) if found else None


def _as_request_error(ex: Exception) -> BaseException:
    if isinstance(ex, ConfigError | ModelError):
        return ex
    # Chat templates raise jinja errors (e.g. "roles must alternate"): say which step failed.
    return ConfigError(f"cannot build the prompt with the model's chat template: {ex}")
