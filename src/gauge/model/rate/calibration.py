"""What a request will really cost in tokens, learned from the replies so far.

A token budget is charged before a request goes, from an estimate of its prompt
(about 4 characters per token) and the most its reply may use (`max_tokens`).
Both are calibrated from the usage the replies report:

- prompts, by the moving ratio of real prompt tokens to the estimate;
- replies, by a line fitted to the last replies' sizes against their prompts'
  (reply = a + b x prompt). For most evals the slope is about 0 and the line is
  the average reply; for translation, summaries or echoes the reply grows with
  the prompt, and a single average would charge short prompts too much and long
  ones too little. The bucket's reservation uses the line; the window mirror,
  which must not be overrun, adds the 95th percentile of the line's misses.
"""

from __future__ import annotations

from collections import deque

HIGH_AFTER = 20
"""Replies needed before the fitted line (and its misses) replace max_tokens."""
REFIT_EVERY = 10
"""Replies between two fits of the line (a fit reads the last HISTORY replies)."""
HISTORY = 200
CALIBRATE = 0.05
"""Weight of each reply in the moving averages behind token reservations."""


class TokenCalibration:
    """Prompt and reply sizes of one connection key."""

    __slots__ = ("_fit", "_high", "_learned", "_output_mean", "_pairs", "_prompt_ratio")

    def __init__(self) -> None:
        self._prompt_ratio = 1.0
        """Real prompt tokens over the chars/4 estimate (a moving average)."""
        self._output_mean: float | None = None
        """Average reply tokens (a moving average), until the first fit."""
        self._pairs: deque[tuple[int, int]] = deque(maxlen=HISTORY)
        """(prompt tokens, reply tokens) of the last replies."""
        self._fit: tuple[float, float] | None = None
        """(a, b) of reply = a + b x prompt, after HIGH_AFTER replies."""
        self._high = 0.0
        """95th percentile of how far replies came out above the line."""
        self._learned = 0

    def _prompt(self, guess: int) -> int:
        return round(guess * self._prompt_ratio)

    def _expected(self, prompt: int) -> float | None:
        if self._fit is not None:
            a, b = self._fit
            return max(0.0, a + b * prompt)
        return self._output_mean

    def reservation(self, guess: int, max_tokens: int | None) -> int:
        """Tokens to reserve for a prompt estimated at `guess` tokens.

        Until replies have come back: `guess` plus `max_tokens` (the most the reply
        may use). Then the prompt estimate is scaled by what prompts really cost,
        and the reply counted at what replies to such a prompt have cost (at most
        `max_tokens`). A reservation far above the real cost is not harmless: its
        refund comes back while the provider's window still holds the request,
        and the requests it lets go can cross the window.
        """
        prompt = self._prompt(guess)
        output = max_tokens or 0
        expected = self._expected(prompt)
        if expected is not None:
            output = min(output, round(expected)) if output else 0
        return prompt + output

    def most(self, guess: int, max_tokens: int | None) -> int:
        """What a prompt estimated at `guess` tokens may cost, as the window mirror
        counts it until the reply: the calibrated prompt plus `max_tokens`, or,
        once enough replies are known, the fitted reply plus the 95th percentile
        of its misses if lower (a reply above that is rare, and the mirror's
        slack absorbs it)."""
        prompt = self._prompt(guess)
        output = max_tokens or 0
        if self._fit is not None and output:
            expected = self._expected(prompt) or 0.0
            output = min(output, round(expected + self._high))
        return prompt + output

    def learn(self, guess: int, prompt: int, output: int) -> None:
        """Count a reply: its prompt was estimated at `guess`, it used `prompt` +
        `output` tokens."""
        self._learned += 1
        # A plain average over the first replies, a moving one after: starting the
        # moving average from 1.0 would take ~60 replies to forget the start.
        weight = max(CALIBRATE, 1.0 / self._learned)
        self._prompt_ratio += weight * (prompt / guess - self._prompt_ratio)
        mean = self._output_mean
        self._output_mean = output if mean is None else mean + weight * (output - mean)
        pairs = self._pairs
        pairs.append((prompt, output))
        if len(pairs) >= HIGH_AFTER and len(pairs) % REFIT_EVERY == 0:
            self._refit()

    def _refit(self) -> None:
        pairs = self._pairs
        n = len(pairs)
        mean_x = sum(p for p, _ in pairs) / n
        mean_y = sum(o for _, o in pairs) / n
        spread = sum((p - mean_x) ** 2 for p, _ in pairs)
        slope = 0.0
        if spread > 0:
            slope = sum((p - mean_x) * (o - mean_y) for p, o in pairs) / spread
        # A reply does not shrink as its prompt grows, as far as a budget cares: a
        # negative slope would under-charge long prompts.
        slope = max(0.0, slope)
        a = mean_y - slope * mean_x
        misses = sorted(o - (a + slope * p) for p, o in pairs)
        self._fit = (a, slope)
        self._high = max(0.0, misses[int(0.95 * (n - 1))])
