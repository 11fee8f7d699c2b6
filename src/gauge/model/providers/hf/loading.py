"""Where a hf model comes from and how it is loaded.

    hf/gauge-tiny                          the model bundled with gauge (package data)
    hf/<hub-id>                            a Hugging Face Hub id (from the local cache
                                           when offline)
    hf/<path>                              a local directory saved with save_pretrained
    hf/local -M model_path=DIR [-M tokenizer_path=DIR]

Model args (`-M name=value`):
    device             cuda, cuda:N (or just N), mps, cpu, or auto (spread over GPUs with
                       accelerate's device_map="auto"); default: cuda, then mps, then cpu
    dtype              float32 | float16 | bfloat16 | auto; default float32 on cpu,
                       the checkpoint's own dtype elsewhere
    trust_remote_code  allow the model's own Python code (default false)
    revision, token, local_files_only, cache_dir
                       go to both the model's and the tokenizer's from_pretrained
    anything else      goes to AutoModelForCausalLM.from_pretrained

`spec_from_args` is cheap and runs when the provider is built (so a bad path
fails at once); `load` imports torch and reads the weights, and runs on the
engine's worker thread, off the event loop.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gauge.errors import ConfigError, MissingExtra, one_line

BUNDLED = "gauge-tiny"
"""The model that ships with gauge (`hf/gauge-tiny`)."""

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "auto": "auto",
}
_SHARED_ARGS = ("revision", "token", "local_files_only", "cache_dir")
_OWN_ARGS = ("model_path", "tokenizer_path", "device", "dtype", "trust_remote_code", "threads")
MODEL_ARGS = frozenset(_OWN_ARGS + _SHARED_ARGS)
"""The model args read here; any other goes to AutoModelForCausalLM.from_pretrained."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Everything that decides which weights are loaded, and how (hashable)."""

    model_path: str
    tokenizer_path: str
    device: str | None
    dtype: str | None
    trust_remote_code: bool
    threads: int | None = None
    """CPU threads for torch (None: torch's current setting, applied explicitly)."""
    shared_kwargs: tuple[tuple[str, Any], ...] = ()
    model_kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(slots=True)
class Loaded:
    """A loaded model and tokenizer, and where inputs must go."""

    model: Any
    tokenizer: Any
    device: Any
    """torch.device that input tensors are moved to."""
    context_length: int | None
    """Most positions the model takes (prompt + output), when the config says."""


def bundled_path() -> Path:
    """The directory of the bundled gauge-tiny model inside the installed package."""
    return Path(str(importlib.resources.files("gauge").joinpath("assets", BUNDLED)))


def spec_from_args(model_name: str, model_args: dict[str, Any]) -> LoadSpec:
    """Resolve `hf/<model_name>` and its `-M` args into a LoadSpec (no heavy imports)."""
    args = dict(model_args)
    model_path = _model_path(model_name, args.pop("model_path", None))
    tokenizer_path = args.pop("tokenizer_path", None)
    if tokenizer_path:
        tokenizer_path = (
            _existing_dir(str(tokenizer_path), "tokenizer_path")
            if _looks_like_path(str(tokenizer_path))
            else str(tokenizer_path)
        )
    device = args.pop("device", None)
    if device is not None and str(device).isdigit():
        device = f"cuda:{device}"  # -M device=1 parses as a number: GPU 1
    dtype = _dtype(args.pop("dtype", None))
    trust = parse_bool(args.pop("trust_remote_code", False), "trust_remote_code")
    threads = _threads(model_name, args.pop("threads", None))
    shared = {name: args.pop(name) for name in _SHARED_ARGS if name in args}
    if "local_files_only" in shared:
        shared["local_files_only"] = parse_bool(shared["local_files_only"], "local_files_only")
    return LoadSpec(
        model_path=str(model_path),
        tokenizer_path=str(tokenizer_path or model_path),
        device=None if device is None else str(device),
        dtype=dtype,
        trust_remote_code=trust,
        threads=threads,
        shared_kwargs=tuple(sorted(shared.items())),
        model_kwargs=tuple(sorted(args.items())),
    )


def _model_path(model_name: str, model_path: Any) -> str:
    """Where `hf/<model_name>` loads from (a directory, or a hub id)."""
    if model_name == "local":
        if not model_path:
            raise ConfigError(
                "hf/local needs the model directory: add -M model_path=DIR "
                "(and -M tokenizer_path=DIR if the tokenizer lives elsewhere)"
            )
        return _existing_dir(str(model_path), "model_path")
    if model_path:
        raise ConfigError(
            f"-M model_path is only for hf/local; use hf/local -M model_path={model_path} "
            f"or hf/{model_name} without it"
        )
    if model_name == BUNDLED:
        path = bundled_path()
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"the bundled model {BUNDLED} is missing from {path}; reinstall gauge "
                "or rebuild it with: python scripts/train_tiny_model.py"
            )
        return str(path)
    if _looks_like_path(model_name):
        return _existing_dir(model_name, "model")
    return model_name


def _dtype(dtype: Any) -> Any:
    if dtype is None:
        return None
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ConfigError(
            f"-M dtype={dtype} is not known; use one of float32, float16, bfloat16, auto"
        )
    return _DTYPES[key]


def _threads(model_name: str, threads: Any) -> int | None:
    if threads is not None:
        if not str(threads).isdigit() or int(threads) < 1:
            raise ConfigError(f"-M threads={threads} must be a whole number >= 1")
        return int(threads)
    if model_name == BUNDLED:
        # A 138k-parameter model gains nothing from intra-op parallelism, and on a
        # busy machine spinning OpenMP threads made each batch ~25x slower.
        return 1
    return None


def load(spec: LoadSpec) -> Loaded:
    """Load the tokenizer and model for `spec` (slow: call it off the event loop)."""
    torch, transformers = import_backend()
    device_map, device = _placement(torch, spec.device)
    shared = dict(spec.shared_kwargs)
    kwargs: dict[str, Any] = {**shared, **dict(spec.model_kwargs)}
    kwargs["trust_remote_code"] = spec.trust_remote_code
    dtype = spec.dtype or ("float32" if device_map is None and device.type == "cpu" else "auto")
    kwargs["dtype"] = dtype if dtype == "auto" else getattr(torch, dtype)
    if device_map is not None:
        kwargs["device_map"] = device_map
    bars = transformers.utils.logging
    had_bars = bars.is_progress_bar_enabled()
    # transformers' "Loading weights" bar would cut through gauge's own progress display.
    bars.disable_progress_bar()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            spec.tokenizer_path, trust_remote_code=spec.trust_remote_code, **shared
        )
        model = transformers.AutoModelForCausalLM.from_pretrained(spec.model_path, **kwargs)
    except ImportError as ex:
        raise MissingExtra(f"loading {spec.model_path} needs more packages: {one_line(ex)}") from ex
    except (OSError, ValueError) as ex:
        raise ConfigError(_load_failure(spec, ex)) from ex
    finally:
        if had_bars:
            bars.enable_progress_bar()
    if device_map is None:
        model.to(device)
    else:
        device = model.device
    if device.type == "cpu":
        # Set explicitly even when unchanged: measured here, torch's implicit
        # default ran batches ~8x slower under load than the same count set.
        torch.set_num_threads(spec.threads or torch.get_num_threads())
    model.eval()
    if tokenizer.pad_token_id is None:
        # Padding is masked out, so any id works; eos is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    return Loaded(model, tokenizer, device, _context_length(model))


def import_backend() -> tuple[Any, Any]:
    """Import torch and transformers, or say how to install them."""
    try:
        import torch
        import transformers
    except ImportError as ex:
        raise MissingExtra(
            f"provider 'hf' needs {ex.name or 'torch and transformers'!r}: pip install 'gauge[hf]'"
        ) from ex
    return torch, transformers


def parse_bool(value: Any, name: str) -> bool:
    """A -M flag's value as a bool (true/false, yes/no, 1/0)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"-M {name}={value} is not a boolean; use true or false")


def _placement(torch: Any, device: str | None) -> tuple[str | None, Any]:
    """(device_map, device) for the requested device."""
    if device == "auto":
        if importlib.util.find_spec("accelerate") is None:
            raise MissingExtra(
                "-M device=auto spreads the model over GPUs with accelerate: pip install accelerate"
            )
        return "auto", None
    if device is None:
        if torch.cuda.is_available():
            return None, torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return None, torch.device("mps")
        return None, torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"-M device={device} is not a device; use cuda, cuda:N, mps, cpu or auto"
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"-M device={device} but no CUDA GPU is visible; use -M device=cpu")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"-M device={device} but MPS is not available; use -M device=cpu")
    return None, chosen


def _context_length(model: Any) -> int | None:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or (len(name) > 1 and name[1] == ":")  # C:\models\x
        or os.path.exists(os.path.expanduser(name))
    )


def _existing_dir(name: str, what: str) -> str:
    path = Path(os.path.expanduser(name))
    if not path.exists():
        raise ConfigError(
            f"hf {what} {name!r} does not exist; give a directory saved with save_pretrained"
        )
    if not path.is_dir():
        raise ConfigError(f"hf {what} {name!r} is not a directory; give the model's directory")
    return str(path.resolve())


def missing_weights(spec: LoadSpec) -> str | None:
    """Why `spec` cannot load on this machine without a download; None when it can.

    A directory (the bundled model, a local path) or a Hub id in the local Hugging
    Face cache loads offline. `-M local_files_only=false` asks for a download, so
    nothing is checked then. Cheap: no torch, no network (the eval pre-flight).
    """
    shared = dict(spec.shared_kwargs)
    if shared.get("local_files_only") is False:
        return None
    cache = Path(str(shared["cache_dir"])).expanduser() if "cache_dir" in shared else hub_cache()
    for what, name in (("model", spec.model_path), ("tokenizer", spec.tokenizer_path)):
        if os.path.isdir(name) or _cached(cache, name):
            continue
        return (
            f"hf {what} {name!r} is not on this machine: not a directory and not in the "
            f"Hugging Face cache ({cache}); download it first (hf download {name}), give a "
            "local directory, or add -M local_files_only=false to download it at the start"
        )
    return None


def hub_cache() -> Path:
    """The Hugging Face Hub cache directory, as huggingface_hub finds it."""
    if found := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(found).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _cached(cache: Path, repo_id: str) -> bool:
    snapshots = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def _load_failure(spec: LoadSpec, ex: BaseException) -> str:
    where = spec.model_path
    if os.path.isdir(where):
        return f"cannot load hf model from {where}: {one_line(ex)}"
    return (
        f"cannot load hf model {where!r}: not a local directory and not available offline "
        f"({one_line(ex)[:200]}); download it first (hf download {where}) or pass a local path"
    )
