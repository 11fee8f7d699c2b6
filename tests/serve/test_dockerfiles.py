"""The worker images, checked statically (no Docker engine runs here; see docs/serve.md).

What can be wrong without building: a COPY of a path that does not exist, an
extra pyproject does not define, a CMD module that does not import, a missing
build argument, or a secret that ends up in a layer or the environment.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined; heredoc bodies skipped."""
    out: list[tuple[str, str]] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        heredoc = re.search(r"<<-?'?(\w+)'?", line)
        if heredoc:
            end = heredoc.group(1)
            while i < len(lines) and lines[i].strip() != end:
                i += 1
            i += 1
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def extras() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"]["optional-dependencies"])


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.baked"])
def test_image_sources_extras_and_entry_point_exist(name: str) -> None:
    steps = instructions(DOCKER / name)
    kinds = [k for k, _ in steps]
    assert kinds.count("FROM") == 1 and "CMD" in kinds
    for kind, args in steps:
        if kind == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
        if kind == "RUN" and "pip install" in args:
            for group in re.findall(r"\.\[([\w,]+)\]", args):
                assert set(group.split(",")) <= extras(), f"{name}: unknown extra in {group}"
    cmd = next(args for kind, args in steps if kind == "CMD")
    module = re.search(r'"-m", "([\w.]+)"', cmd)
    assert module is not None and importlib.util.find_spec(module.group(1)) is not None


def test_baked_image_takes_the_documented_build_args_and_keeps_the_token_secret() -> None:
    steps = instructions(DOCKER / "Dockerfile.baked")
    args = {a.split("=")[0] for kind, a in steps if kind == "ARG"}
    assert {
        "MODEL_NAME",
        "BASE_PATH",
        "QUANTIZATION",
        "WORKER_CUDA_VERSION",
        "TOKENIZER_NAME",
        "TOKENIZER_REVISION",
    } <= args
    # HF_TOKEN arrives as a BuildKit secret only: never an ARG or ENV (both persist).
    assert "HF_TOKEN" not in args
    assert not any(kind == "ENV" and "HF_TOKEN" in a for kind, a in steps)
    assert any(kind == "RUN" and "--mount=type=secret,id=HF_TOKEN" in a for kind, a in steps)
    assert (DOCKER / "Dockerfile.baked").read_text().startswith("# syntax=docker/dockerfile:")


def test_runtime_image_reads_the_model_at_run_time() -> None:
    steps = instructions(DOCKER / "Dockerfile")
    args = {a.split("=")[0] for kind, a in steps if kind == "ARG"}
    assert "MODEL_NAME" not in args and "WORKER_CUDA_VERSION" in args
    assert not any("snapshot_download" in a for _, a in steps)
