"""Datasets for evals: `from gauge.dataset import Sample, json_dataset, csv_dataset`."""

from gauge.evaluation.dataset import (
    Dataset,
    DatasetError,
    FieldSpec,
    Sample,
    as_dataset,
    csv_dataset,
    hf_dataset,
    json_dataset,
)

__all__ = [
    "Dataset",
    "DatasetError",
    "FieldSpec",
    "Sample",
    "as_dataset",
    "csv_dataset",
    "hf_dataset",
    "json_dataset",
]
