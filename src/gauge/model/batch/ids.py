"""Deterministic custom ids: the same request gets the same id in a resumed run.

An id is the request's cache key digest (`cache.key.request_key`: provider,
model, base URL, messages, tools, result-changing config and the eval epoch)
followed by an occurrence counter, so identical requests in one run (the same
prompt in two samples) get distinct ids, as a job requires. The key always
includes the epoch here, whatever the cache policy says: epochs are separate
requests in a batch even where the cache shares their answer.

Identical requests are interchangeable (same messages, same settings), so a
resumed run that counts them in another order still re-attaches correctly.
The count starts afresh for each run (the batch stage keeps one per ledger):
a resume in the same process, with the same memoized model, gets the ids the
killed run used, not the next ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gauge.model.cache.key import ModelParts, model_material, request_key
from gauge.model.cache.policy import CachePolicy

if TYPE_CHECKING:
    from gauge.model.api import ModelAPI
    from gauge.model.request import ModelRequest

_DIGEST_HEX = 32
"""Hex digits of the digest kept (128 bits): ids stay short in every provider's files."""


class IdMaker:
    """Make custom ids for the requests of one model."""

    def __init__(self, api: ModelAPI) -> None:
        self.api = api
        self._parts: ModelParts = model_material(
            api.name, api.model_name, api.base_url, api.model_args
        )
        self._seen: dict[str, int] = {}

    def digest(self, request: ModelRequest) -> str:
        """The request's key digest as hex (without the occurrence counter)."""
        setting = request.config.cache
        policy = _POLICY
        if isinstance(setting, CachePolicy) and (setting.scopes or not setting.per_epoch):
            policy = setting.model_copy(update={"per_epoch": True})
        api = self.api
        key = request_key(
            api.name,
            api.model_name,
            api.base_url,
            request.input,
            request.tools,
            request.tool_choice,
            request.config,
            policy,
            model_parts=self._parts,
        )
        return key.digest.hex()[:_DIGEST_HEX]

    def next_id(self, request: ModelRequest, seen: dict[str, int] | None = None) -> str:
        """The id of this occurrence of `request` (`<digest>-<n>`, n counting from 0).

        `seen` holds the counts (one per run); without it, the maker's own.
        """
        counts = self._seen if seen is None else seen
        digest = self.digest(request)
        n = counts.get(digest, 0)
        counts[digest] = n + 1
        return f"{digest}-{n}"


_POLICY = CachePolicy()
