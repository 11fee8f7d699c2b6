from pathlib import Path

import pytest

from gauge.dataset import DatasetError, FieldSpec, Sample, csv_dataset, hf_dataset, json_dataset


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_jsonl_maps_fields_and_keeps_the_rest_as_metadata(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl",
        '{"q": "2+2?", "a": 4, "key": "x1", "level": "easy"}\n\n'
        '{"q": "3+3?", "a": "6", "key": "x2"}\n',
    )
    data = json_dataset(path, FieldSpec(input="q", target="a", id="key"))
    assert [s.input for s in data] == ["2+2?", "3+3?"]
    assert [s.target for s in data] == ["4", "6"]
    assert [s.id for s in data] == ["x1", "x2"]
    assert data[0].metadata == {"level": "easy"}
    assert data[1].metadata is None
    assert data.name == "d"


def test_json_list_and_auto_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", '[{"input": "a"}, {"input": "b", "target": ["x", "y"]}]')
    data = json_dataset(path)
    assert [s.id for s in data] == [1, 2]
    assert data[1].targets == ["x", "y"]


def test_record_to_sample_function(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"question": "Q", "answer": "A"}\n')
    data = json_dataset(path, lambda r: Sample(input=r["question"].lower(), target=r["answer"]))
    assert data[0].input == "q" and data[0].target == "A" and data[0].id == 1


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", '{"input": "ok"}\n{"input": "ok"}\n{"input": \n')
    with pytest.raises(DatasetError, match=r"bad\.jsonl:3: not valid JSON"):
        json_dataset(path)


def test_missing_input_field_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"input": "ok"}\n{"prompt": "no"}\n')
    with pytest.raises(DatasetError, match=r"d\.jsonl:2: no 'input' field"):
        json_dataset(path)


def test_non_object_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", "[1, 2]\n")
    with pytest.raises(DatasetError, match=r"d\.jsonl:1: expected an object, got list"):
        json_dataset(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset file"):
        json_dataset(tmp_path / "nope.jsonl")


def test_shuffle_is_seeded_and_limit_applies_after(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", "".join(f'{{"input": "{i}"}}\n' for i in range(50)))
    first = [s.input for s in json_dataset(path, shuffle=True, seed=7, limit=10)]
    again = [s.input for s in json_dataset(path, shuffle=True, seed=7, limit=10)]
    other = [s.input for s in json_dataset(path, shuffle=True, seed=8, limit=10)]
    assert first == again and first != other and len(first) == 10
    assert first != [str(i) for i in range(10)]


def test_csv_with_choices_and_bad_row(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.csv",
        'input,target,choices\n"Pick one",B,"red|green|blue"\nQ2,A,"[""x"", ""y""]"\n',
    )
    data = csv_dataset(path)
    assert data[0].choices == ["red", "green", "blue"]
    assert data[1].choices == ["x", "y"]
    assert data[0].target == "B"
    bad = write(tmp_path / "bad.csv", "input,target\nq,a\nq2,a2,extra\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:3: more values"):
        csv_dataset(bad)


def test_messages_input(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl",
        '{"input": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}\n'
        '{"input": [{"role": "wizard", "content": "U"}]}\n',
    )
    with pytest.raises(DatasetError, match=r"d\.jsonl:2: input messages are invalid"):
        json_dataset(path)
    good = write(tmp_path / "g.jsonl", path.read_text().splitlines()[0] + "\n")
    sample = json_dataset(good)[0]
    assert [m.role for m in sample.input] == ["system", "user"]


def test_hf_dataset_without_package_is_one_clear_error(tmp_path: Path) -> None:
    try:
        import datasets  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(DatasetError, match="pip install datasets"):
            hf_dataset(tmp_path / "x.jsonl")
    else:
        path = write(tmp_path / "x.jsonl", '{"input": "a", "target": "b"}\n')
        assert hf_dataset(path)[0].target == "b"


class FakeDatasets:
    """Stands in for the `datasets` package: records how it was asked to load."""

    class DatasetDict(dict):  # type: ignore[type-arg]
        pass

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows
        self.calls: list[tuple] = []

    def load_dataset(self, kind: str, data_files: str | None = None, split: str | None = None):
        self.calls.append(("load_dataset", kind, data_files, split))
        return list(self.rows)

    def load_from_disk(self, path: str):
        self.calls.append(("load_from_disk", path))
        return self.DatasetDict(train=list(self.rows))


def test_hf_dataset_translates_local_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    fake = FakeDatasets([{"question": "Q1", "answer": "A1"}, {"question": "Q2", "answer": "A2"}])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    data_file = write(tmp_path / "qa.parquet", "")
    data = hf_dataset(data_file, sample_fields=FieldSpec(input="question", target="answer"))
    assert fake.calls == [("load_dataset", "parquet", str(data_file), "train")]
    assert [(s.input, s.target, s.id) for s in data] == [("Q1", "A1", 1), ("Q2", "A2", 2)]
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "dataset_info.json").write_text("{}")
    assert len(hf_dataset(saved, sample_fields=FieldSpec(input="question"))) == 2
    with pytest.raises(DatasetError, match="no split 'test'; splits: train"):
        hf_dataset(saved, split="test", sample_fields=FieldSpec(input="question"))
    with pytest.raises(DatasetError, match="no such file or directory"):
        hf_dataset(tmp_path / "missing")
