"""The interfaces of a connection key's parts that another implementation may replace.

`ConnectionKey` (keys.py) holds its limiter, budgets and pause through these
protocols. The in-process classes (limits.ConnectionLimiter, budgets.Budgets,
pause.Pause) implement them; the implementation shared across processes through
Redis (shared_key.py, on with the shared-state setting) implements the same
methods, and the pipeline stages, which only talk to the ConnectionKey, do not
change. `KeyParts` is what a ConnectionKey is built from when its parts are not
the in-process defaults.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gauge.model.rate.buckets import TokenBucket
from gauge.model.rate.calibration import TokenCalibration
from gauge.model.rate.headers import RateHeaders
from gauge.model.rate.window import Entry, TokenWindow

if TYPE_CHECKING:
    from gauge.model.rate.inference import RateInference
    from gauge.model.rate.slots import Slots
    from gauge.model.rate.stop import FatalStop

Sleep = Callable[[float], Awaitable[object]]
Clock = Callable[[], float]


class Limiter(Protocol):
    """Connection slots: at most `limit` holders at once, first come first served."""

    limit: int
    in_flight: int
    peak: int

    async def acquire(self) -> None:
        """Wait for a free slot and take it."""

    def release(self) -> None:
        """Give a slot back."""

    @property
    def saturated(self) -> bool:
        """Whether every slot is taken."""

    def set_limit(self, limit: int) -> None:
        """Change the number of slots."""


class KeyPause(Protocol):
    """The key-wide pause."""

    until: float
    count: int

    def active(self, now: float) -> bool:
        """Whether a pause is in force at `now`."""

    def extend(self, until: float) -> bool:
        """Hold the key until `until`; False when a longer pause already holds it."""

    async def wait(self, sleep: Sleep, clock: Clock) -> None:
        """Wait until the pause is over."""


class KeyBudgets(Protocol):
    """Request and token budgets of one key."""

    rpm: TokenBucket | None
    tpm: TokenBucket | None
    window: TokenWindow | None
    learned_rpm: float | None
    inferred_rpm: bool
    calibration: TokenCalibration
    bound_at: float

    @property
    def active(self) -> bool:
        """Whether any budget paces the key."""

    def configure(self, rpm: float | None, tpm: float | None, now: float) -> None:
        """Apply the user's budgets."""

    def tickets(self, tokens: int, now: float) -> tuple[float, float]:
        """Reserve one request and `tokens` tokens; their places in line."""

    async def wait_requests(
        self, ticket: float, sleep: Sleep, clock: Clock, probing: Callable[[], bool]
    ) -> None:
        """Wait until the request budget covers `ticket`."""

    async def wait_tokens(self, ticket: float, sleep: Sleep, clock: Clock) -> None:
        """Wait until the token budget covers `ticket`."""

    def window_wait(self, tokens: int, now: float) -> float:
        """Seconds until `tokens` more fit in the provider's window."""

    def refund(self, tokens: int, requests: bool, now: float) -> None:
        """Give back a reservation that was never used."""

    def hold(self, until: float, now: float) -> None:
        """A key-wide pause until `until`."""

    def settle(self, reserved: int, used: int | None, entry: Entry | None, now: float) -> None:
        """A reply used `used` tokens where `reserved` were reserved."""

    def rejected(self, reserved: int, entry: Entry | None, now: float) -> None:
        """A rejected request's reservation returns."""

    def episode(self, now: float, cut: bool) -> None:
        """A rate-limit episode began."""

    def learn(self, info: RateHeaders, now: float) -> tuple[bool, bool] | None:
        """Take the limits and what is left from response headers."""

    def charge(self, had: tuple[bool, bool], requests: int, tokens: int, now: float) -> None:
        """Charge budgets that were just created with what was already sent."""

    def from_headers(self) -> bool:
        """Whether the provider stated its limits."""

    def one_request(self, tokens: int) -> float:
        """Seconds the budgets take to earn one request of `tokens` tokens."""

    def reservation(self, guess: int, max_tokens: int | None) -> int:
        """Tokens to reserve for a prompt estimated at `guess` tokens."""

    def most(self, guess: int, max_tokens: int | None) -> int:
        """The most a prompt estimated at `guess` tokens may cost."""

    def set_inferred(self, rpm: float, now: float) -> None:
        """Make `rpm` the inferred request budget."""

    def raise_inferred(self, rpm: float, now: float) -> None:
        """Raise the inferred request budget and wake its waiters."""


@dataclass(slots=True)
class KeyParts:
    """The parts of one connection key, when another implementation provides them."""

    slots: Slots
    pause: KeyPause
    budgets: KeyBudgets
    stop: FatalStop
    inference: Callable[[KeyBudgets, Callable[[], int], Callable[[], bool]], RateInference]
    """Makes the rate inference from the budgets, the slots in flight and whether paused."""
    attach: Callable[[Any], None] | None = None
    """Told the ConnectionKey once it is built (the parts may need its counters)."""
