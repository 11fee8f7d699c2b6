"""Helpers for the batch translator tests: BatchItems from plain prompts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gauge.model import ChatMessageUser, GenerateConfig
from gauge.model.batch.api import BatchItem
from gauge.model.request import ModelRequest

MakeItem = Callable[..., BatchItem]


def make_item(custom_id: str, text: str, **config: Any) -> BatchItem:
    """A BatchItem asking `text`, with `config` as its GenerateConfig."""
    request = ModelRequest([ChatMessageUser(content=text)], [], "auto", GenerateConfig(**config))
    return BatchItem(custom_id, request)


@pytest.fixture
def item() -> MakeItem:
    return make_item
