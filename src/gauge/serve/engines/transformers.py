"""The transformers engine: the hf provider's loading and dynamic batching, served.

Requests from every connection share batches through the hf provider's
`BatchEngine` (one worker thread, one `generate` call per batch; see
gauge.model.providers.hf). This module only translates `EngineRequest` to the
provider's `GenRequest` and its results back.

Beyond the basics it honours top_k, min_p, repetition_penalty, logit_bias,
presence/frequency penalties, stop_token_ids, include_stop_str_in_output,
add_generation_prompt, continue_final_message, echo, prompt_logprobs,
ignore_eos, skip_special_tokens, spaces_between_special_tokens, and beam search
(use_beam_search with best_of as the width, n, length_penalty, early_stopping:
transformers' own beam search, one `generate` call per such request, see
gauge.model.providers.hf.beams). best_of above n without beam search is refused
(HTTP 400): only beams rank candidates here.

Streaming is token by token: the provider's stopping hook reports each new
token from the worker thread, and `stream` decodes each choice's tokens so far
and sends the new text. Text that could still become part of a stop sequence
(the last len(longest stop) - 1 characters) and an incomplete UTF-8 character
are held back, so nothing sent is ever cut away later. Requests that ask for
logprobs stream each choice whole when it is done.

Prompt logprobs (and any request whose prompt the engine must tokenize itself:
continue_final_message, max_tokens 0, and /tokenize) go through a second queue:
requests waiting together are tokenized and scored in one call to the hf
provider's `scoring.prompt_logprobs`, run on the model's one worker thread
(serialised with the generate batches); generation then starts from exactly
the scored ids.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from gauge.errors import ConfigError
from gauge.model.providers.hf import DEFAULT_BATCH, LocalEngine, loading
from gauge.model.providers.hf.decoding import decode_ids
from gauge.model.providers.hf.generation import (
    GenChoice,
    Generator,
    GenRequest,
    GenResult,
    Sampling,
)
from gauge.serve.engines import hf_scoring
from gauge.serve.engines.base import (
    BASIC_FIELDS,
    Choice,
    Delta,
    Engine,
    EngineRequest,
    EngineResult,
    SamplingParams,
    TokenInfo,
    TokenizeRequest,
    hf_tokenizer_info,
)
from gauge.serve.engines.hf_scoring import Job, Scored

if TYPE_CHECKING:
    from gauge.serve.settings import Settings


class _TimedLocal(LocalEngine):
    """The provider's LocalEngine, noting when each request's batch starts (queue time)."""

    def __init__(self, spec: loading.LoadSpec) -> None:
        super().__init__(spec)
        self.started: dict[int, float] = {}

    def _run(self, requests: list[GenRequest]) -> list[GenResult | BaseException]:
        now = time.perf_counter()
        for request in requests:
            self.started[id(request)] = now
        return super()._run(requests)


class TransformersEngine(Engine):
    """A transformers causal LM with dynamic batching (CPU or GPU)."""

    name: ClassVar[str] = "transformers"
    honours: ClassVar[frozenset[str]] = BASIC_FIELDS | {
        "top_k",
        "min_p",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "stop_token_ids",
        "include_stop_str_in_output",
        "add_generation_prompt",
        "continue_final_message",
        "echo",
        "prompt_logprobs",
        "ignore_eos",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "use_beam_search",
        "length_penalty",
        "early_stopping",
    }
    uses_settings: ClassVar[frozenset[str]] = frozenset(
        {
            "MODEL_REVISION",
            "MAX_MODEL_LEN",
            "BASE_PATH",
            "HF_TOKEN",
            "TRUST_REMOTE_CODE",
            "SEED",
            "DTYPE",
            "TOKENIZER_NAME",
            "CUSTOM_CHAT_TEMPLATE",
        }
    )

    def __init__(
        self,
        model_name: str,
        spec: loading.LoadSpec,
        served_name: str | None = None,
        max_model_len: int | None = None,
        seed: int | None = None,
        chat_template: str | None = None,
        max_batch: int = DEFAULT_BATCH,
    ) -> None:
        super().__init__(served_name or model_name)
        self.local = _TimedLocal(spec)
        self.max_batch = max_batch
        self._max_model_len = max_model_len
        self._chat_template = chat_template
        # SEED makes unseeded sampled requests reproducible, in arrival order (as vLLM's).
        self._seeds = random.Random(seed) if seed is not None else None
        self._vocab = 0
        self._waiting: list[tuple[Job, asyncio.Future[Scored]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.prompt_batches: deque[int] = deque(maxlen=10_000)
        """Sizes of the prompt batches run so far (most recent last), for tests."""

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersEngine:
        """Build the engine from server settings (the weights load in `start`)."""
        args: dict[str, object] = {}
        if settings.model_revision:
            args["revision"] = settings.model_revision
        if settings.hf_token:
            args["token"] = settings.hf_token
        if settings.base_path:
            args["cache_dir"] = settings.base_path
        if settings.trust_remote_code:
            args["trust_remote_code"] = True
        if settings.dtype:
            args["dtype"] = settings.dtype
        if settings.tokenizer_name:
            args["tokenizer_path"] = settings.tokenizer_name
        name = settings.model_name.removeprefix("hf/")
        spec = loading.spec_from_args(name, args)
        return cls(
            settings.model_name,
            spec,
            served_name=settings.served_name,
            max_model_len=settings.max_model_len,
            seed=settings.seed,
            chat_template=_read_template(settings.custom_chat_template),
        )

    async def load(self) -> None:
        generator = await self.local.ensure_loaded()
        loaded = generator.loaded
        if self._max_model_len is not None:
            known = loaded.context_length
            loaded.context_length = (
                min(known, self._max_model_len) if known else self._max_model_len
            )
        if self._chat_template is not None:
            loaded.tokenizer.chat_template = self._chat_template
        self.max_model_len = loaded.context_length
        self._vocab = hf_scoring.vocab_size(generator)

    async def generate(
        self, request: EngineRequest, on_token: Callable[[int, int], bool] | None = None
    ) -> EngineResult:
        generator = self._generator()
        scored = None
        prompt = request.prompt
        if isinstance(prompt, list):
            hf_scoring.check_ids(prompt, self._vocab)
        if _needs_own_prompt(request):
            scored = await self._prompt(Job(request, request.prompt_logprobs))
            prompt = scored.ids
        prefix = self._echo_text(generator, request) if request.echo else ""
        if scored is not None and request.sampling.max_tokens == 0:
            lps: list[TokenInfo] | None = [] if request.sampling.logprobs is not None else None
            # Nothing to generate: each choice is the echo alone (vLLM: finish "length").
            choices = [Choice(prefix, "length", 0, lps) for _ in range(request.sampling.n)]
            return EngineResult(len(scored.ids), choices, prompt_logprobs=scored.logprobs)
        gen = GenRequest(
            request.messages or [],
            self._sampling(request.sampling),
            prompt=prompt,
            add_generation_prompt=request.add_generation_prompt,
            on_token=on_token,
        )
        submitted = time.perf_counter()
        try:
            result = await self.local.engine.submit(gen, self.max_batch)
        finally:
            started = self.local.started.pop(id(gen), submitted)
        choices = [_choice(c, generator, prefix) for c in result.choices]
        await self._final_logprobs(request, result.choices, choices, scored)
        return EngineResult(
            result.input_tokens,
            choices,
            max(0.0, started - submitted),
            prompt_logprobs=scored.logprobs if scored is not None else None,
        )

    async def _final_logprobs(
        self,
        request: EngineRequest,
        generated: list[GenChoice],
        choices: list[Choice],
        scored: Scored | None,
    ) -> None:
        """Completions: add the logprob of a choice's final EOS / stop token id.

        The provider's logprobs cover the text's tokens only, but legacy
        completions list every generated token (OpenAI's `<|endoftext|>`, vLLM),
        and lm-eval's echo scoring (`max_tokens: 1`, then
        `token_logprobs[ctxlen:-1]`) drops the last entry as the generated one:
        without it, the continuation's last token was cut off whenever the model
        chose EOS. One extra forward pass, only for such choices. Chat logprobs
        stay the provider's (the text's tokens, as OpenAI's chat API lists them).
        """
        if request.prompt is None:
            return
        missing = [
            i
            for i, c in enumerate(generated)
            if c.logprobs is not None and len(c.logprobs) < len(c.token_ids)
        ]
        if not missing:
            return
        generator = self._generator()
        ids = scored.ids if scored is not None else (await self._prompt(Job(request))).ids
        k = request.sampling.logprobs or 0
        for i in missing:
            gen, logprobs = generated[i], choices[i].logprobs
            assert gen.logprobs is not None and logprobs is not None
            work = functools.partial(
                hf_scoring.tail_logprobs,
                generator,
                ids + gen.token_ids,
                len(gen.token_ids) - len(gen.logprobs),
                k,
            )
            for token_id, value, top in await self.local.engine.run_in_worker(work):
                logprobs.append(_token_info(generator, token_id, value, top))

    async def tokenize(self, request: TokenizeRequest) -> list[int]:
        return (await self._prompt(Job(request))).ids

    async def detokenize(self, ids: list[int]) -> str:
        generator = self._generator()
        return await self.local.engine.run_in_worker(
            functools.partial(hf_scoring.detokenize, generator, ids)
        )

    async def token_texts(self, ids: list[int]) -> list[str]:
        generator = self._generator()
        return await self.local.engine.run_in_worker(
            functools.partial(hf_scoring.token_texts, generator, ids)
        )

    async def tokenizer_info(self) -> dict[str, Any]:
        return hf_tokenizer_info(self._generator().loaded.tokenizer, self.max_model_len)

    def _generator(self) -> Generator:
        generator = self.local.generator
        if generator is None:
            raise ConfigError("the model is not loaded yet; retry once /health says ready")
        return generator

    async def _prompt(self, job: Job) -> Scored:
        """Tokenize (and score) one prompt, in a batch with the others waiting."""
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, future))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        # Every prompt submitted in the same loop turn, or while a batch runs on the
        # model's worker thread (serialised with the generate batches: the model is
        # not thread-safe), goes into the next batch.
        try:
            while self._waiting:
                await asyncio.sleep(0)  # the rest of this loop turn joins too
                batch, self._waiting = self._waiting, []
                batch = [(job, future) for job, future in batch if not future.done()]
                if not batch:
                    continue
                self.prompt_batches.append(len(batch))
                jobs = [job for job, _ in batch]
                results: list[Scored | BaseException]
                try:
                    work = functools.partial(hf_scoring.score_jobs, self._generator(), jobs)
                    results = await self.local.engine.run_in_worker(work)
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as ex:  # the worker is gone (shutdown): fail this batch
                    results = [ex] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._drainer = None

    async def stream(self, request: EngineRequest) -> AsyncIterator[Delta | EngineResult]:
        if request.sampling.logprobs is not None:
            async for item in super().stream(request):
                yield item
            return
        loop = asyncio.get_running_loop()
        made: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

        listening = [True]

        def on_token(choice: int, token: int) -> bool:  # on the worker thread
            # A gone client or a closed loop (shutdown) ends this request's rows, so
            # the rest of the batch does not wait for them. Never raise: that would
            # fail the whole batch.
            if listening[0]:
                try:
                    loop.call_soon_threadsafe(made.put_nowait, (choice, token))
                except RuntimeError:
                    listening[0] = False
            return listening[0]

        work = asyncio.ensure_future(self.generate(request, on_token))
        texts = _StreamTexts(self, request)
        try:
            while True:
                waiter = asyncio.ensure_future(made.get())
                await asyncio.wait({waiter, work}, return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    waiter.cancel()
                    break
                choice, token = waiter.result()
                piece = texts.add(choice, token)
                if piece:
                    yield Delta(choice, piece)
            result = work.result()
            while not made.empty():  # tokens reported after the last wait
                made.get_nowait()
            for index, choice_result in enumerate(result.choices):
                yield Delta(
                    index, texts.rest(index, choice_result.text), choice_result.finish_reason
                )
            yield result
        finally:
            listening[0] = False
            work.cancel()

    async def close(self) -> None:
        self.local.engine.close()
        await super().close()

    def _sampling(self, p: SamplingParams) -> Sampling:
        seed = p.seed
        if seed is None and self._seeds is not None and p.temperature:
            seed = self._seeds.getrandbits(63)
        top = p.logprobs or 0
        return Sampling(
            max_tokens=p.max_tokens,
            temperature=p.temperature or 0.0,
            top_p=p.top_p,
            top_k=p.top_k if p.top_k is not None and p.top_k > 0 else None,
            seed=seed,
            n=p.n,
            stop=tuple(s for s in p.stop if s),
            logprobs=p.logprobs is not None,
            top_logprobs=top,
            frequency_penalty=p.frequency_penalty,
            presence_penalty=p.presence_penalty,
            logit_bias=p.logit_bias,
            min_p=p.min_p,
            repetition_penalty=p.repetition_penalty,
            stop_token_ids=p.stop_token_ids,
            include_stop=p.include_stop_str_in_output,
            ignore_eos=p.ignore_eos,
            skip_special_tokens=p.skip_special_tokens,
            spaces_between_special_tokens=p.spaces_between_special_tokens,
            beams=(p.best_of or p.n) if p.use_beam_search else 0,
            length_penalty=p.length_penalty,
            early_stopping=p.early_stopping,
        )

    @staticmethod
    def _echo_text(generator: Generator, request: EngineRequest) -> str:
        if isinstance(request.prompt, list):
            text: str = generator.loaded.tokenizer.decode(request.prompt, skip_special_tokens=True)
            return text
        if isinstance(request.prompt, str):
            return request.prompt
        return request.echo_text


class _StreamTexts:
    """Each choice's text so far while streaming, and how much of it is safe to send."""

    def __init__(self, engine: TransformersEngine, request: EngineRequest) -> None:
        generator = engine.local.generator
        assert generator is not None  # tokens arrive only once the model is loaded
        self.tokenizer = generator.loaded.tokenizer
        p = request.sampling
        eos = frozenset() if p.ignore_eos else generator.eos_ids
        self.skip = eos | set(p.stop_token_ids)
        self.flags = (p.skip_special_tokens, p.spaces_between_special_tokens)
        stops = tuple(s for s in request.sampling.stop if s)
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.include_stop = request.sampling.include_stop_str_in_output
        self.prefix = engine._echo_text(generator, request) if request.echo else ""
        self.ids: dict[int, list[int]] = {}
        self.sent: dict[int, str] = {}
        self.stopped: set[int] = set()

    def add(self, choice: int, token: int) -> str:
        """The new text that can be sent after `token` (maybe empty)."""
        if token in self.skip or choice in self.stopped:
            return ""
        ids = self.ids.setdefault(choice, [])
        ids.append(token)
        text = self.prefix + decode_ids(self.tokenizer, ids, *self.flags)
        safe = len(text) - self.hold
        for stop in self.stops:
            at = text.find(stop, len(self.prefix))
            if at >= 0:
                self.stopped.add(choice)
                safe = min(safe, at + (len(stop) if self.include_stop else 0))
        # An incomplete UTF-8 character decodes as U+FFFD until its last byte arrives.
        while safe > 0 and text[safe - 1] == "\ufffd":
            safe -= 1
        sent = self.sent.get(choice, "")
        if safe <= len(sent):
            return ""
        self.sent[choice] = text[:safe]
        return text[len(sent) : safe]

    def rest(self, choice: int, final: str) -> str:
        """What the final text adds to what was sent."""
        sent = self.sent.get(choice, "")
        if final.startswith(sent):
            return final[len(sent) :]
        # Not expected: sent text is held back from any cut, and sent text cannot be
        # taken back, so the stream carries on from the same length.
        return final[len(sent) :]


def _choice(choice: GenChoice, generator: Generator, prefix: str) -> Choice:
    logprobs = None
    if choice.logprobs is not None:
        logprobs = [
            _token_info(generator, lp.token_id, lp.logprob, lp.top) for lp in choice.logprobs
        ]
    reason = "length" if choice.stop_reason in ("max_tokens", "model_length") else "stop"
    return Choice(prefix + choice.text, reason, len(choice.token_ids), logprobs)


def _token_info(
    generator: Generator, token_id: int, logprob: float, top: list[tuple[int, float]]
) -> TokenInfo:
    token, data = generator.token_bytes(token_id)
    alternatives = []
    for alt_id, value in top:
        alt, alt_data = generator.token_bytes(alt_id)
        alternatives.append((alt, value, list(alt_data)))
    return TokenInfo(token, logprob, list(data), alternatives)


def _needs_own_prompt(request: EngineRequest) -> bool:
    """Whether the engine tokenizes the prompt itself before generating (see module doc)."""
    return (
        request.prompt_logprobs is not None
        or request.continue_final_message
        or request.sampling.max_tokens == 0
    )


def _read_template(value: str | None) -> str | None:
    """CUSTOM_CHAT_TEMPLATE is the Jinja template itself, or a path to a file holding it."""
    if not value:
        return None
    from pathlib import Path

    if "{" not in value:
        path = Path(value)
        if not path.is_file():
            raise ConfigError(
                f"CUSTOM_CHAT_TEMPLATE={value!r} is neither a Jinja template nor a file; "
                "pass the template text or the path of a file holding it"
            )
        return path.read_text()
    return value
