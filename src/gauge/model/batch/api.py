"""The batch contract: what a provider's batch translator does, and what the
pipeline's batch stage and the eval journal exchange.

A provider with a batch endpoint returns a `BatchAPI` from `ModelAPI.batch_api()`.
Like a provider, a BatchAPI only translates: build one line per request (reusing
the provider's own request builder), upload/create a job, read its status, read
its results (reusing the provider's response parser), cancel it. Collecting
requests into jobs, splitting by `limits`, polling with backoff, retrying
failed items, cache and usage live once, in the batch stage (batch/stage.py).

The batch stage tells a `BatchLedger` (set by the eval runner through
`batch_ledger`) about each job before it waits on it, so a resumed run can
re-attach to jobs already paid for instead of submitting their requests again.
It also tells the ledger of each job it is *about* to create (an intent with a
fresh random token, which `submit` tags the job with): a run killed inside the
create call leaves an intent without a job id, and the resumed run asks the
provider (`find_job`) whether that job exists before sending its requests again.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence, Set
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from gauge.model.output import ModelOutput
    from gauge.model.request import ModelRequest

BatchState = Literal[
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
]
"""A job's state in OpenAI's words; each translator maps its provider's states onto them."""

FINAL_STATES = frozenset({"completed", "failed", "expired", "cancelled"})

FIND_SLACK = 300.0
"""Seconds of clock skew between this machine and a provider that `find_job` allows."""
TAG_KEY = "gauge_token"
"""The metadata key a job's tag goes under, where the provider has job metadata."""


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What one job of this provider may hold; the stage splits larger batches."""

    max_requests: int
    max_bytes: int


@dataclass(slots=True)
class BatchItem:
    """One request in a job. `custom_id` is deterministic (batch/ids.py): the same
    request in a resumed run gets the same id, which is how it re-attaches."""

    custom_id: str
    request: ModelRequest


@dataclass(slots=True)
class BatchStatus:
    """A job as last polled."""

    state: BatchState
    total: int = 0
    completed: int = 0
    failed: int = 0
    message: str | None = None
    """Why a job failed / expired, in the provider's words, where it says."""

    @property
    def done(self) -> bool:
        """Whether the job will not change any more."""
        return self.state in FINAL_STATES


@dataclass(slots=True)
class ItemError:
    """One request of a job that failed. `retryable` follows the provider's error
    classification (a rate limit or server error inside a batch is retryable;
    a bad request is not)."""

    message: str
    status: int | None = None
    retryable: bool = False


@dataclass(slots=True)
class BatchResults:
    """A finished job's answers by custom_id; ids missing from both maps were not
    answered (expired or cancelled jobs) and go to the next batch."""

    outputs: dict[str, ModelOutput] = field(default_factory=dict)
    errors: dict[str, ItemError] = field(default_factory=dict)


class BatchAPI(abc.ABC):
    """Translate batches of requests to one provider's batch endpoint and back."""

    provider: str = ""
    """The provider name, as in `ModelAPI.name` (journal records and messages)."""
    limits: BatchLimits = BatchLimits(max_requests=50_000, max_bytes=200 * 1024 * 1024)

    def size(self, item: BatchItem) -> int:
        """Bytes `item` takes in a job, for splitting by `limits.max_bytes`.

        The default estimates from the text of the messages; a translator that
        encodes its lines here (and reuses them in `submit`) gives the exact size.
        """
        request = item.request
        text = sum(len(str(m.content)) for m in request.input)
        return 256 + text + sum(len(t.model_dump_json()) for t in request.tools)

    @abc.abstractmethod
    async def submit(self, items: list[BatchItem], tag: str = "") -> str:
        """Create one job holding `items` (within `limits`); return its id.

        `tag` (when given) marks the job where the provider allows (batch
        metadata, a display name, the input file's name), so `find_job` can find
        it if the process dies before this call returns.
        """

    async def find_job(
        self, tag: str, since: float, custom_ids: Sequence[str], known: Set[str]
    ) -> str | None:
        """The id of the job `submit(items, tag)` created, or None if there is none.

        Looks through the provider's list of jobs, newest first, stopping at jobs
        created before `since` (Unix time, less `FIND_SLACK` for clock skew).
        `custom_ids` are the requests the job holds and `known` the job ids the
        caller already accounts for: a translator whose jobs carry no tag matches
        on them. The default finds nothing (the requests are then sent again).
        """
        return None

    @abc.abstractmethod
    async def status(self, job_id: str) -> BatchStatus:
        """Poll the job once."""

    @abc.abstractmethod
    async def results(self, job_id: str) -> BatchResults:
        """The answers of a job whose status is done (partial for expired/cancelled)."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> None:
        """Ask the provider to cancel the job (results so far stay readable)."""

    async def close(self) -> None:  # noqa: B027 (optional hook, empty by design)
        """Release clients and connections."""


@dataclass(slots=True)
class BatchRecord:
    """A submitted job as the journal keeps it: enough to re-attach after a crash."""

    job_id: str
    provider: str
    model: str
    custom_ids: list[str]
    submitted: float
    """Unix time of submission (of an intent: just before the create call)."""
    state: BatchState = "validating"
    token: str = ""
    """The random tag the job was created with ("" for jobs recorded before tags)."""

    @property
    def intent(self) -> bool:
        """Whether this is an intent: a job about to be created, whose id is not known."""
        return not self.job_id


class BatchLedger(Protocol):
    """Where submitted jobs are recorded before anyone waits on them (the eval journal)."""

    def intended(self, record: BatchRecord) -> None:
        """A job is about to be created (`record.intent`, with its token): record it
        durably before the create call, so a crash inside that call is recoverable."""

    def resolved(self, record: BatchRecord) -> None:
        """An earlier run's intent was looked up: `record.job_id` is the job found
        (re-attached: record it like a submitted job) or "" (never created: forget it)."""

    def jobs(self) -> Set[str]:
        """The ids of every job this ledger knows (this run's and the resumed runs')."""

    def submitted(self, record: BatchRecord) -> None:
        """A job was created: record it durably (flushed) before the stage waits on it."""

    def finished(self, record: BatchRecord) -> None:
        """A job reached a final state and its results were handed out."""

    def find(self, custom_id: str) -> BatchRecord | None:
        """The job a previous run submitted for this request, or its unresolved intent.

        Jobs the journal shows finished stay findable on resume (a sample whose
        line was lost in a kill reads its paid-for answer again), except jobs
        that failed as a whole; a job finished in this run is forgotten, so a
        request it left unanswered goes into a new job.
        """


batch_ledger: ContextVar[BatchLedger | None] = ContextVar("gauge_batch_ledger", default=None)
"""The ledger of the running eval (None outside an eval: jobs are not recorded)."""


class BatchObserver(Protocol):
    """Told about jobs as they move, for a live display (evaluation/progress.py)."""

    def job(self, record: BatchRecord, status: BatchStatus) -> None:
        """A job was submitted, polled, or finished."""


batch_observer: ContextVar[BatchObserver | None] = ContextVar("gauge_batch_observer", default=None)
