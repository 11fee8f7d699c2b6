"""Token-by-token streaming for the hf provider.

The generation hook (`GenRequest.on_token`) reports each new token of the first
choice from the worker thread; `stream_tokens` hands them to the event loop and
`TextStream` turns the ids so far into the next safe piece of text. Held back:
the last len(longest stop) - 1 characters, which could still become part of a
stop sequence, and an incomplete UTF-8 character, so nothing sent is ever cut
away later. The final text (the provider's own cut) completes the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from gauge.model.providers.hf.generation import GenResult


class TextStream:
    """One choice's text so far, and how much of it is safe to send."""

    def __init__(self, tokenizer: Any, skip: frozenset[int], stops: tuple[str, ...]) -> None:
        self.tokenizer = tokenizer
        self.skip = skip
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.ids: list[int] = []
        self.sent = ""
        self.stopped = False

    def add(self, token: int) -> str:
        """The new text that can be sent after `token` (maybe empty)."""
        if token in self.skip or self.stopped:
            return ""
        self.ids.append(token)
        text: str = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        safe = len(text) - self.hold
        for stop in self.stops:
            at = text.find(stop)
            if at >= 0:
                self.stopped = True
                safe = min(safe, at)
        # An incomplete UTF-8 character decodes as U+FFFD until its last byte arrives.
        while safe > 0 and text[safe - 1] == "\ufffd":
            safe -= 1
        if safe <= len(self.sent):
            return ""
        piece = text[len(self.sent) : safe]
        self.sent = text[:safe]
        return piece

    def rest(self, final: str) -> str:
        """What the final text adds to what was sent."""
        return final[len(self.sent) :]


async def stream_tokens(
    submit: Callable[[Callable[[int, int], bool]], Awaitable[GenResult]],
    new_stream: Callable[[], TextStream],
) -> AsyncIterator[str | GenResult]:
    """Yield text pieces of choice 0 as tokens are made, then the GenResult.

    `submit(on_token)` queues the request with that hook; `new_stream()` builds
    the TextStream once the first token shows the model is loaded.
    """
    loop = asyncio.get_running_loop()
    made: asyncio.Queue[int] = asyncio.Queue()
    listening = [True]

    def on_token(choice: int, token: int) -> bool:  # on the worker thread
        # Never raise here (it would fail the whole batch); a closed loop or a
        # consumer that stopped ends this request's rows only.
        if listening[0] and choice == 0:
            try:
                loop.call_soon_threadsafe(made.put_nowait, token)
            except RuntimeError:
                listening[0] = False
        return listening[0]

    work = asyncio.ensure_future(submit(on_token))
    text: TextStream | None = None
    try:
        while True:
            waiter = asyncio.ensure_future(made.get())
            await asyncio.wait({waiter, work}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                waiter.cancel()
                break
            text = text or new_stream()
            if piece := text.add(waiter.result()):
                yield piece
        result = work.result()
        while not made.empty():  # tokens reported after the last wait
            token = made.get_nowait()
            text = text or new_stream()
            if piece := text.add(token):
                yield piece
        if result.choices:
            final = result.choices[0].text
            yield final if text is None else text.rest(final)
        yield result
    finally:
        listening[0] = False
        work.cancel()
