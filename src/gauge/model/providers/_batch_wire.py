"""What every batch translator checks and reads the same way.

job_headers   one set of extra headers per job (a job is one HTTP request)
check_size    a single request larger than a whole job is a one-line error
read_jsonl    a result file, one JSON object a line
unix_time     a job's creation time (Unix seconds or RFC 3339) as Unix seconds
too_old       whether a job was created before `find_job`'s `since` (less the slack)
LineBatchAPI  a translator whose jobs are one encoded line per request
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import orjson

from gauge.errors import UnsupportedConfig
from gauge.model.batch.api import FIND_SLACK, BatchAPI, BatchItem, BatchLimits
from gauge.model.providers._http import HTTPConnectionError


def job_headers(provider: str, items: list[BatchItem]) -> dict[str, str] | None:
    """The `extra_headers` every item shares; items that differ are an error.

    Headers go with the job's create request, not with each line, so they must
    agree (a beta header, say, changes every answer in the job).
    """
    first = items[0].request.config.extra_headers if items else None
    for item in items[1:]:
        if item.request.config.extra_headers != first:
            raise UnsupportedConfig(
                f"{provider} batch: requests in one job carry different extra_headers, but "
                "a job is sent with one set; give every request the same extra_headers, or "
                "send these without batch (batch=False)"
            )
    return dict(first) if first else None


def check_size(provider: str, size: int, limits: BatchLimits) -> None:
    """Raise when one request alone is over the provider's bytes per job."""
    if size > limits.max_bytes:
        raise UnsupportedConfig(
            f"a request of {_mb(size)} is over {provider}'s batch limit of "
            f"{_mb(limits.max_bytes)} per job; send it without batch (batch=False) or "
            "make it smaller"
        )


def encoded_lines(
    provider: str,
    items: list[BatchItem],
    kept: dict[str, str],
    encode: Callable[[BatchItem], bytes],
    limits: BatchLimits,
) -> list[bytes]:
    """Each item's line as bytes (taken out of `kept`, or encoded now), size-checked."""
    lines = []
    for item in items:
        text = kept.pop(item.custom_id, None)
        line = text.encode() if text is not None else encode(item)
        check_size(provider, len(line), limits)
        lines.append(line)
    return lines


class LineBatchAPI(BatchAPI):
    """A translator whose job holds one encoded line per request.

    Each line is encoded once, in `size()` (so the size the collector splits by is
    exact), and kept as str until `take_lines` hands it to `submit`: each orjson
    bytes object holds a 4 KiB buffer (20,000 pending lines would be 80 MB).
    """

    _lines: dict[str, str]
    """custom_id -> its encoded line; subclasses set it to {} in __init__."""

    @abc.abstractmethod
    def line(self, item: BatchItem) -> bytes:
        """The item's line in the provider's job format (without its newline)."""

    def size(self, item: BatchItem) -> int:
        """Encode the item's line now (kept for submit) and return its exact size."""
        line = self.line(item)
        check_size(self.provider, len(line), self.limits)
        self._lines[item.custom_id] = line.decode()
        return len(line) + 1

    def take_lines(self, items: list[BatchItem]) -> list[bytes]:
        """The items' lines as bytes (kept ones taken out, others encoded now), checked."""
        return encoded_lines(self.provider, items, self._lines, self.line, self.limits)


def read_jsonl(raw: bytes, what: str) -> Iterator[dict[str, Any]]:
    """The objects of a JSONL file; an unreadable line is a connection error (retried)."""
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad = line[:200]
            raise HTTPConnectionError(f"{what}: line {number} is not JSON: {bad!r}") from None
        if isinstance(value, dict):
            yield value


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


LIST_PAGE = 100
"""Jobs asked for per page of a provider's job list (`find_job`); read at call time."""

_FRACTION = re.compile(r"(\.\d{6})\d+")


def unix_time(value: Any) -> float | None:
    """A creation time as Unix seconds: a number as is, an RFC 3339 string parsed
    (Google's nanoseconds cut to microseconds); None when it is neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(
            _FRACTION.sub(r"\1", value.replace("Z", "+00:00"))
        ).timestamp()
    except ValueError:
        return None


def too_old(created: Any, since: float) -> bool:
    """Whether a job created at `created` predates `since` by more than the clock slack."""
    when = unix_time(created)
    return when is not None and when < since - FIND_SLACK
