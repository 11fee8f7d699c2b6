"""Samples and datasets: JSON/JSONL, CSV and Hugging Face files, with field mapping.

A dataset is an ordered list of `Sample`s. Loaders map record fields onto
sample fields (`FieldSpec` or a function), then shuffle (seeded) and limit.
A record that cannot become a sample is an error naming the file and line.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gauge.errors import GaugeError
from gauge.model.messages import ChatMessage


class DatasetError(GaugeError, ValueError):
    """A dataset file is missing, malformed, or a record does not fit a Sample."""

    exit_code = 2


@dataclass(slots=True)
class Sample:
    """One evaluation item: input (a prompt or messages), target, choices, id, metadata."""

    input: str | list[ChatMessage]
    target: str | list[str] = ""
    choices: list[str] | None = None
    id: str | int | None = None
    metadata: dict[str, Any] | None = None

    @property
    def targets(self) -> list[str]:
        """The target as a list of acceptable answers."""
        return [self.target] if isinstance(self.target, str) else list(self.target)


@dataclass(slots=True)
class FieldSpec:
    """Which record fields hold each Sample field (defaults are the Sample names)."""

    input: str = "input"
    target: str = "target"
    choices: str = "choices"
    id: str = "id"
    metadata: list[str] | None = None
    """Record fields copied into metadata (None: every field not mapped above)."""


RecordToSample = Callable[[dict[str, Any]], Sample]


@dataclass(slots=True)
class Dataset(Sequence[Sample]):
    """An ordered list of samples with a name (the file it came from)."""

    samples: list[Sample]
    name: str = "dataset"
    location: str | None = None
    shuffled: bool = field(default=False)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: Any) -> Any:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def shuffle(self, seed: int | None = None) -> Dataset:
        """Shuffle in place (seeded for reproducibility); returns self."""
        random.Random(seed).shuffle(self.samples)
        self.shuffled = True
        return self

    def limit(self, n: int | None) -> Dataset:
        """Keep the first `n` samples (None keeps all); returns self."""
        if n is not None:
            del self.samples[n:]
        return self


def as_dataset(value: Dataset | Iterable[Sample] | Iterable[dict[str, Any]]) -> Dataset:
    """A Dataset from a Dataset, a list of Samples, or a list of dict records."""
    if isinstance(value, Dataset):
        return value
    samples: list[Sample] = []
    for index, item in enumerate(value):
        if isinstance(item, Sample):
            samples.append(item)
        elif isinstance(item, dict):
            samples.append(_record_to_sample(item, FieldSpec(), "dataset", index + 1))
        else:
            raise DatasetError(
                f"dataset item {index + 1} is a {type(item).__name__}; give Samples or dicts"
            )
    return Dataset(samples)


def json_dataset(
    path: str | Path,
    sample_fields: FieldSpec | RecordToSample | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    limit: int | None = None,
    auto_id: bool = False,
) -> Dataset:
    """Load a `.jsonl` file (one record per line) or a `.json` file (a list of records)."""
    path = Path(path)
    raw = _read_bytes(path)
    records: Iterable[tuple[int, Any]]
    if path.suffix.lower() == ".json" and raw.lstrip()[:1] == b"[":
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as ex:
            raise DatasetError(f"{path}: not valid JSON ({ex}); fix the file") from None
        records = ((index + 1, item) for index, item in enumerate(data))
        unit = "record"
    else:
        records = _jsonl_records(path, raw)
        unit = "line"
    samples = _to_samples(path, records, sample_fields, unit, auto_id)
    return _finish(Dataset(samples, name=path.stem, location=str(path)), shuffle, seed, limit)


def csv_dataset(
    path: str | Path,
    sample_fields: FieldSpec | RecordToSample | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    limit: int | None = None,
    auto_id: bool = False,
    delimiter: str = ",",
) -> Dataset:
    """Load a CSV file with a header row; list columns (choices) are JSON or `|`-separated."""
    path = Path(path)
    text = _read_bytes(path).decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    if not reader.fieldnames:
        raise DatasetError(f"{path}: no header row; the first line must name the columns")

    def records() -> Iterator[tuple[int, Any]]:
        for row in reader:
            if None in row:
                raise DatasetError(
                    f"{path}:{reader.line_num}: more values than the {len(reader.fieldnames or [])}"
                    " header columns; quote values that contain the delimiter"
                )
            yield reader.line_num, row

    samples = _to_samples(path, records(), sample_fields, "line", auto_id)
    return _finish(Dataset(samples, name=path.stem, location=str(path)), shuffle, seed, limit)


def hf_dataset(
    path: str | Path,
    split: str = "train",
    sample_fields: FieldSpec | RecordToSample | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    limit: int | None = None,
    auto_id: bool = False,
) -> Dataset:
    """Load a Hugging Face dataset from local files (a saved dataset dir or data files).

    Needs the `datasets` package; nothing is downloaded.
    """
    try:
        import datasets  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:
        raise DatasetError(
            "hf_dataset needs the 'datasets' package: pip install datasets"
        ) from None
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    try:
        if path.is_dir() and (path / "dataset_info.json").exists():
            data = datasets.load_from_disk(str(path))
        elif path.is_dir():
            data = datasets.load_dataset(str(path), split=split)
        else:
            kind = {".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}.get(
                path.suffix.lower(), "json"
            )
            data = datasets.load_dataset(kind, data_files=str(path), split=split)
    except Exception as ex:
        raise DatasetError(f"{path}: cannot load with datasets ({ex})") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise DatasetError(f"{path}: no split {split!r}; splits: {', '.join(data)}")
        data = data[split]
    records = ((index + 1, dict(row)) for index, row in enumerate(data))
    samples = _to_samples(path, records, sample_fields, "row", auto_id)
    return _finish(Dataset(samples, name=path.stem, location=str(path)), shuffle, seed, limit)


def _finish(dataset: Dataset, shuffle: bool, seed: int | None, limit: int | None) -> Dataset:
    if shuffle:
        dataset.shuffle(seed)
    return dataset.limit(limit)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such dataset file") from None
    except OSError as ex:
        raise DatasetError(f"{path}: cannot read ({ex.strerror})") from None


def _jsonl_records(path: Path, raw: bytes) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, orjson.loads(line)
        except orjson.JSONDecodeError as ex:
            raise DatasetError(f"{path}:{number}: not valid JSON ({ex}); fix that line") from None


def _to_samples(
    path: Path,
    records: Iterable[tuple[int, Any]],
    spec: FieldSpec | RecordToSample | None,
    unit: str,
    auto_id: bool,
) -> list[Sample]:
    samples: list[Sample] = []
    for number, record in records:
        where = f"{path}:{number}" if unit == "line" else f"{path} {unit} {number}"
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected an object, got {type(record).__name__}")
        if callable(spec):
            try:
                sample = spec(record)
            except Exception as ex:
                raise DatasetError(f"{where}: record_to_sample failed ({ex})") from None
            if not isinstance(sample, Sample):
                raise DatasetError(f"{where}: record_to_sample must return a Sample")
        else:
            sample = _record_to_sample(record, spec or FieldSpec(), where, None)
        if auto_id or sample.id is None:
            sample.id = len(samples) + 1
        samples.append(sample)
    return samples


def _record_to_sample(
    record: dict[str, Any], spec: FieldSpec, where: str, number: int | None
) -> Sample:
    if number is not None:
        where = f"{where} item {number}"
    if spec.input not in record:
        raise DatasetError(f"{where}: no {spec.input!r} field; map the input field with FieldSpec")
    value = record[spec.input]
    if isinstance(value, list):
        value = _messages(value, where)
    elif not isinstance(value, str):
        value = str(value)
    target = record.get(spec.target, "")
    if isinstance(target, list):
        target = [str(t) for t in target]
    elif not isinstance(target, str):
        target = str(target)
    choices = record.get(spec.choices)
    if isinstance(choices, str):
        choices = _split_choices(choices)
    if choices is not None and not isinstance(choices, list):
        raise DatasetError(f"{where}: {spec.choices!r} must be a list of strings")
    ident = record.get(spec.id)
    mapped = {spec.input, spec.target, spec.choices, spec.id}
    keys = spec.metadata if spec.metadata is not None else [k for k in record if k not in mapped]
    metadata = {k: record[k] for k in keys if k in record} or None
    return Sample(
        input=value,
        target=target,
        choices=None if choices is None else [str(c) for c in choices],
        id=ident if isinstance(ident, str | int) else None if ident is None else str(ident),
        metadata=metadata,
    )


def _split_choices(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, list):
            return [str(v) for v in value]
    return [part.strip() for part in text.split("|")] if text else []


def _messages(value: list[Any], where: str) -> list[ChatMessage]:
    from pydantic import TypeAdapter, ValidationError

    from gauge.errors import one_line

    try:
        return TypeAdapter(list[ChatMessage]).validate_python(value)
    except ValidationError as ex:
        raise DatasetError(f"{where}: input messages are invalid ({one_line(ex)})") from None
