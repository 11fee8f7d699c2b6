"""Loglikelihood scoring with a loaded transformers model (lm-eval's HFLM semantics).

    prompt_logprobs   logprob, rank and top alternatives of every token of some
                      sequences, from one padded forward pass per sub-batch
                      (`gauge serve` builds echo / prompt logprobs on it)
    score_pairs       (context, continuation) -> Loglikelihood, via encode_pair
    score_rolling     whole texts -> Loglikelihood, via rolling_windows

All of it is blocking torch work: call it on the provider's worker thread.
Log-probabilities are float32 log_softmax of the logits whatever the model's
dtype, so batched and one-by-one results agree to ~1e-6.
"""

from __future__ import annotations

import asyncio
import copy
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gauge.errors import ConfigError
from gauge.model.output import ModelUsage
from gauge.model.providers.hf.loading import Loaded, import_backend
from gauge.model.scoring import (
    Loglikelihood,
    LoglikelihoodRequest,
    Tokenizer,
    encode_pair,
    rolling_windows,
    with_usage,
)

if TYPE_CHECKING:
    from gauge.model.providers.hf import LocalEngine

DEFAULT_MAX_LENGTH = 2048
"""lm-eval's default when neither the model config nor the tokenizer says."""
BATCH_TOKENS = 8192
"""Padded tokens per forward pass; longer lists run as several sub-batches."""


@dataclass(frozen=True, slots=True)
class TokenScore:
    """The model's view of one token of a sequence, given the tokens before it."""

    token_id: int
    logprob: float
    rank: int
    """1-based rank of the token among the vocabulary (1: the argmax)."""
    top: tuple[tuple[int, float], ...] = ()
    """The `top_k` most likely (token id, logprob) pairs, most likely first."""


class HFTokenizer:
    """A transformers tokenizer seen through the scoring `Tokenizer` protocol."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        # Texts longer than the model's context are expected here (rolling windows
        # cut them); mark transformers' "longer than the maximum" warning as shown.
        shown = getattr(tokenizer, "deprecation_warnings", None)
        if isinstance(shown, dict):
            shown["sequence-length-is-longer-than-the-specified-maximum"] = True

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with no special tokens added."""
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`."""
        text: str = self.tokenizer.decode(ids)
        return text

    @property
    def prefix_token_id(self) -> int | None:
        """bos if the tokenizer has one, else eos (lm-eval's rule)."""
        bos = self.tokenizer.bos_token_id
        return int(bos) if bos is not None else self.tokenizer.eos_token_id


def max_length_of(loaded: Loaded) -> int:
    """Most tokens the model sees at once: its config, else the tokenizer's, else 2048."""
    if loaded.context_length:
        return loaded.context_length
    limit = getattr(loaded.tokenizer, "model_max_length", None)
    # Tokenizers without a limit report a huge sentinel (int(1e30)).
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    return DEFAULT_MAX_LENGTH


def prompt_logprobs(
    model: Loaded, sequences: list[list[int]], top_k: int = 0
) -> list[list[TokenScore]]:
    """Scores of positions 1..n-1 of each sequence (position 0 has no logprob).

    The model reads each sequence minus its last token (so at most its context
    length), right-padded into sub-batches of similar lengths with an attention
    mask; the logits at position i score token i+1.
    """
    if top_k < 0:
        raise ConfigError(f"top_k must be 0 or more, got {top_k}")
    results: list[list[TokenScore]] = [[] for _ in sequences]
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    batch: list[int] = []
    for index in order:
        if len(sequences[index]) < 2:
            continue  # nothing to score
        width = len(sequences[batch[0]]) - 1 if batch else len(sequences[index]) - 1
        if batch and width * (len(batch) + 1) > BATCH_TOKENS:
            _score_batch(model, sequences, batch, top_k, results)
            batch = []
        batch.append(index)
    if batch:
        _score_batch(model, sequences, batch, top_k, results)
    return results


def _score_batch(
    loaded: Loaded,
    sequences: list[list[int]],
    batch: list[int],
    top_k: int,
    results: list[list[TokenScore]],
) -> None:
    torch, _ = import_backend()
    inputs = [sequences[i][:-1] for i in batch]
    width = max(len(ids) for ids in inputs)
    pad = loaded.tokenizer.pad_token_id or 0
    ids = torch.full((len(inputs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for row, seq in enumerate(inputs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    device = loaded.device
    # Right padding: every row's real tokens sit at positions 0..n-1, so the
    # model's default position ids are exact (and ALiBi models such as Bloom,
    # which take no position_ids, work too).
    with torch.inference_mode():
        logits = loaded.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for row, index in enumerate(batch):
            n = len(inputs[row])
            logprobs = torch.log_softmax(logits[row, :n].float(), dim=-1)
            targets = torch.tensor(sequences[index][1:], dtype=torch.long, device=logprobs.device)
            chosen = logprobs.gather(-1, targets[:, None])
            ranks = (logprobs > chosen).sum(-1) + 1
            if top_k:
                top_values, top_ids = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1)
                tops = list(zip(top_ids.tolist(), top_values.tolist(), strict=True))
            results[index] = [
                TokenScore(
                    token,
                    value,
                    rank,
                    tuple(zip(*tops[i], strict=True)) if top_k else (),
                )
                for i, (token, value, rank) in enumerate(
                    zip(targets.tolist(), chosen[:, 0].tolist(), ranks.tolist(), strict=True)
                )
            ]


def score_pairs(
    model: Loaded,
    tokenizer: Tokenizer,
    pairs: list[LoglikelihoodRequest],
    max_length: int,
) -> list[Loglikelihood]:
    """lm-eval HFLM loglikelihoods: the model reads (ctx + cont)[-(max_length + 1):][:-1]."""
    work = prepare_pairs(tokenizer, pairs, max_length)
    return work.collect(prompt_logprobs(model, work.sequences))


def score_rolling(
    model: Loaded, tokenizer: Tokenizer, texts: list[str], max_length: int
) -> list[Loglikelihood]:
    """Loglikelihood of each whole text, every token scored once, in windows of max_length."""
    work = prepare_rolling(tokenizer, texts, max_length)
    return work.collect(prompt_logprobs(model, work.sequences))


@dataclass(slots=True)
class Work:
    """Token sequences to score, and which result each one's last `count` tokens add to."""

    results: int
    sequences: list[list[int]] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)

    def add(self, owner: int, sequence: list[int], count: int) -> None:
        """Score the last `count` tokens of `sequence` into result `owner`."""
        self.sequences.append(sequence)
        self.counts.append(count)
        self.owners.append(owner)

    def collect(self, scores: list[list[TokenScore]]) -> list[Loglikelihood]:
        """The results from `prompt_logprobs(model, self.sequences)`, with usage."""
        logprob = [0.0] * self.results
        greedy = [True] * self.results
        tokens = [0] * self.results
        for owner, window, count in zip(self.owners, scores, self.counts, strict=True):
            part = window[-count:]
            logprob[owner] += sum(s.logprob for s in part)
            greedy[owner] = greedy[owner] and all(s.rank == 1 for s in part)
            tokens[owner] += len(part)
        results = [
            Loglikelihood(logprob[i], greedy[i] and tokens[i] > 0, tokens[i])
            for i in range(self.results)
        ]
        # The model reads every sequence but its last token.
        read = sum(max(0, len(seq) - 1) for seq in self.sequences)
        return with_usage(results, ModelUsage(input_tokens=read, total_tokens=read))


def prepare_pairs(tokenizer: Tokenizer, pairs: list[LoglikelihoodRequest], max_length: int) -> Work:
    """Tokenize (context, continuation) pairs by `encode_pair`, cut to the model's window."""
    work = Work(len(pairs))
    for owner, pair in enumerate(pairs):
        context_ids, continuation_ids = encode_pair(tokenizer, pair.context, pair.continuation)
        if not continuation_ids:
            raise ConfigError(
                f"continuation {pair.continuation!r} adds no tokens after its context; "
                "give a continuation that is not only whitespace"
            )
        if len(continuation_ids) > max_length:
            raise ConfigError(
                f"a continuation of {len(continuation_ids)} tokens is longer than the "
                f"model's {max_length}-token context; shorten it or use loglikelihood_rolling"
            )
        whole = (context_ids + continuation_ids)[-(max_length + 1) :]
        work.add(owner, whole, len(continuation_ids))
    return work


def prepare_rolling(tokenizer: Tokenizer, texts: list[str], max_length: int) -> Work:
    """Tokenize whole texts into `rolling_windows` of the model's length."""
    prefix = tokenizer.prefix_token_id
    if prefix is None:
        raise ConfigError(
            "rolling loglikelihood needs a tokenizer with a bos or eos token to start from"
        )
    work = Work(len(texts))
    for owner, text in enumerate(texts):
        for context, continuation in rolling_windows(tokenizer.encode(text), prefix, max_length):
            work.add(owner, context + continuation, len(continuation))
    return work


def score_jobs(
    model: Loaded, tokenizer: Tokenizer, jobs: list[tuple[str, list[Any]]], max_length: int
) -> list[list[Loglikelihood] | BaseException]:
    """Score several callers' jobs ("pairs" or "rolling", items) in shared forward passes.

    A job whose input cannot be tokenized gets its own error; the others still run.
    """
    prepared: list[Work | BaseException] = []
    for kind, items in jobs:
        try:
            if kind == "pairs":
                prepared.append(prepare_pairs(tokenizer, items, max_length))
            else:
                prepared.append(prepare_rolling(tokenizer, items, max_length))
        except Exception as ex:
            prepared.append(ex)
    sequences = [seq for w in prepared if isinstance(w, Work) for seq in w.sequences]
    scores = prompt_logprobs(model, sequences)
    out: list[list[Loglikelihood] | BaseException] = []
    start = 0
    for work in prepared:
        if isinstance(work, BaseException):
            out.append(work)
            continue
        end = start + len(work.sequences)
        out.append(work.collect(scores[start:end]))
        start = end
    return out


class ScoreQueue:
    """Concurrent scoring calls on one loaded model share forward passes.

    The generation engine's scheduling (see engine.py), for scoring: a call that
    finds the queue idle starts a run on the next loop turn, so every call made in
    the same turn joins it; calls arriving while a run is on the worker thread
    form the next run. Runs go through `engine.run_in_worker`, so they are
    serialised with generation batches on the model's one worker thread.
    """

    def __init__(self, local: LocalEngine) -> None:
        # Weak: the queues table is keyed by the engine, and a strong reference
        # here would keep a closed provider's weights alive.
        self._local = weakref.ref(local)
        self.pending: list[tuple[str, list[Any], asyncio.Future[list[Loglikelihood]]]] = []
        self._task: asyncio.Task[None] | None = None
        self.runs: list[int] = []
        """Jobs per run so far, for tests and benchmarks."""

    async def submit(self, kind: str, items: list[Any]) -> list[Loglikelihood]:
        """Queue one call's items ("pairs": requests, "rolling": texts); wait for its results."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Loglikelihood]] = loop.create_future()
        self.pending.append((kind, items, future))
        if self._task is None:
            # A task's first step runs on the next loop turn: calls made in this
            # turn are all pending by then.
            self._task = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        jobs: list[tuple[str, list[Any], asyncio.Future[list[Loglikelihood]]]] = []
        try:
            while True:
                jobs = [job for job in self.pending if not job[2].done()]
                self.pending = []
                if not jobs:
                    return
                self.runs.append(len(jobs))
                try:
                    results = await self._score([(kind, items) for kind, items, _ in jobs])
                except Exception as ex:
                    results = [_own_copy(ex) for _ in jobs]
                for (_, _, future), result in zip(jobs, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        except BaseException:  # cancelled with the loop: no caller may hang
            for _, _, future in [*jobs, *self.pending]:
                future.cancel()
            self.pending = []
            raise
        finally:
            self._task = None

    async def _score(
        self, jobs: list[tuple[str, list[Any]]]
    ) -> list[list[Loglikelihood] | BaseException]:
        local = self._local()
        if local is None:
            raise RuntimeError("the hf model was closed while scoring requests were queued")
        generator = local.generator or await local.ensure_loaded()
        loaded = generator.loaded
        tokenizer = HFTokenizer(loaded.tokenizer)
        length = max_length_of(loaded)
        return await local.engine.run_in_worker(lambda: score_jobs(loaded, tokenizer, jobs, length))


def _own_copy(ex: Exception) -> Exception:
    # One failure for several callers: each gets its own copy, since the retry
    # layer attaches per-request history to the exception.
    try:
        dup = copy.copy(ex)
    except Exception:
        return ex
    dup.__cause__ = ex.__cause__
    return dup.with_traceback(ex.__traceback__)


_queues: weakref.WeakKeyDictionary[
    LocalEngine, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ScoreQueue]
] = weakref.WeakKeyDictionary()


def score_queue(local: LocalEngine) -> ScoreQueue:
    """The scoring queue of `local` in the running event loop (futures cannot cross loops)."""
    per_loop = _queues.get(local)
    if per_loop is None:
        per_loop = _queues[local] = weakref.WeakKeyDictionary()
    loop = asyncio.get_running_loop()
    queue = per_loop.get(loop)
    if queue is None:
        queue = per_loop[loop] = ScoreQueue(local)
    return queue
