"""What a request will really cost in tokens, learned from the replies so far.

A token budget is charged before a request goes, from an estimate of its prompt
(about 4 characters per token) and the most its reply may use (`max_tokens`).
Both are calibrated from the usage the replies report: prompts by the ratio of
real prompt tokens to the estimate, replies by their moving average (for the
bucket's reservation) and their 95th percentile (for the window mirror, which
must not be overrun).
"""

from __future__ import annotations

from collections import deque

HIGH_AFTER = 20
"""Replies needed before their 95th percentile replaces max_tokens in the mirror."""
CALIBRATE = 0.05
"""Weight of each reply in the moving averages behind token reservations."""


class TokenCalibration:
    """Moving averages of prompt and reply sizes of one connection key."""

    __slots__ = ("_output_high", "_output_mean", "_outputs", "_prompt_ratio")

    def __init__(self) -> None:
        self._prompt_ratio = 1.0
        """Real prompt tokens over the chars/4 estimate (a moving average)."""
        self._output_mean: float | None = None
        """Average reply tokens (a moving average)."""
        self._outputs: deque[int] = deque(maxlen=200)
        self._output_high: int | None = None
        """95th percentile of the last replies' tokens (after HIGH_AFTER replies)."""

    def reservation(self, guess: int, max_tokens: int | None) -> int:
        """Tokens to reserve for a prompt estimated at `guess` tokens.

        Until replies have come back: `guess` plus `max_tokens` (the most the reply
        may use). Then the prompt estimate is scaled by what prompts really cost,
        and the reply counted at the average reply so far (at most `max_tokens`).
        A reservation far above the real cost is not harmless: its refund comes
        back while the provider's window still holds the request, and the
        requests it lets go can cross the window.
        """
        output = max_tokens or 0
        if self._output_mean is not None:
            output = min(output, round(self._output_mean)) if output else 0
        return round(guess * self._prompt_ratio) + output

    def most(self, guess: int, max_tokens: int | None) -> int:
        """What a prompt estimated at `guess` tokens may cost, as the window mirror
        counts it until the reply: the calibrated prompt plus `max_tokens`, or,
        once enough replies are known, their 95th percentile if lower (a reply
        above it is rare, and the mirror's slack absorbs it)."""
        output = max_tokens or 0
        if self._output_high is not None and output:
            output = min(output, self._output_high)
        return round(guess * self._prompt_ratio) + output

    def learn(self, guess: int, prompt: int, output: int) -> None:
        """Count a reply: its prompt was estimated at `guess`, it used `prompt` +
        `output` tokens."""
        self._prompt_ratio += CALIBRATE * (prompt / guess - self._prompt_ratio)
        mean = self._output_mean
        self._output_mean = output if mean is None else mean + CALIBRATE * (output - mean)
        outputs = self._outputs
        outputs.append(output)
        if len(outputs) >= HIGH_AFTER and len(outputs) % 10 == 0:
            ranked = sorted(outputs)
            self._output_high = ranked[int(0.95 * (len(ranked) - 1))]
