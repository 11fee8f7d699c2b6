"""Check gauge's loglikelihood scoring against lm-evaluation-harness itself, offline.

Run with a Python that has lm-eval installed (its own venv) and gauge on the path:

    python3 -m venv /tmp/lmeval_venv
    /tmp/lmeval_venv/bin/pip install lm-eval torch==2.13.0 transformers \\
        orjson pyyaml python-dotenv click rich pydantic
    PYTHONPATH=src /tmp/lmeval_venv/bin/python scripts/check_lm_eval_parity.py

It starts `gauge serve` (bundled gauge-tiny, transformers engine) with gauge's own
venv (`--gauge-python`, default .venv/bin/python) on a free 127.0.0.1 port, then
scores the same (context, continuation) pairs and texts with:

    lm-eval HFLM                 lm_eval.models.huggingface.HFLM(pretrained=gauge-tiny)
    lm-eval local-completions    LocalCompletionsAPI against gauge serve
    gauge hf/gauge-tiny          in process
    gauge completions            openai-api-completions/local/gauge-tiny against the same
                                 server, with -M tokenizer= and with the server's /tokenize

and prints the largest per-item difference of each against lm-eval's HFLM, the
is_greedy disagreements, then the template-provider contract check (an lm-eval
TemplateAPI subclass and the same method bodies on gauge's TemplateAPI against
one fake server) and lm-eval's acc / acc_norm against gauge's on the same
loglikelihoods. Exits 1 when any difference exceeds --tolerance (1e-4 nats).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "src" / "gauge" / "assets" / "gauge-tiny"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def chat(question: str) -> str:
    return f"<|user|>{question}<|assistant|>"


def make_pairs() -> list[tuple[str, str]]:
    """~50 pairs in gauge-tiny's chat format plus the whitespace and empty-context edge cases."""
    pairs: list[tuple[str, str]] = []
    for a, b in [(2, 3), (7, 5), (12, 9), (40, 2), (33, 33), (8, 1), (15, 27), (99, 1)]:
        right = a + b
        for answer in (right, right + 1, right + 10, right * 2):
            pairs.append((chat(f"What is {a}+{b}?"), str(answer)))
    for a, b in [(3, 4), (6, 9), (21, 13)]:
        pairs.append((chat(f"What is {a}+{b}?"), f"{a + b}<|eos|>"))  # answer then end
        pairs.append((f"What is {a}+{b}? Answer: ", f"{a + b}"))  # whitespace moves over
        pairs.append((f"Q: {a}+{b}=", f" {a + b}"))  # plain text, spaced continuation
        pairs.append((f"{a}+{b}", "="))  # single-character continuation
    pairs.append(("", "What is 2+3?"))  # empty context: the prefix token starts it
    pairs.append(("", chat("What is 1+1?") + "2"))
    pairs.append((chat("What is 10+10?") + "2", "0"))  # token seam inside a number
    pairs.append((chat("What is 2+2?"), " 4"))
    return pairs


def make_texts() -> list[str]:
    texts = [chat(f"What is {a}+{b}?") + f"{a + b}<|eos|>" for a, b in [(2, 3), (9, 9), (14, 28)]]
    texts += ["What is 2+3? 5", "The sum of 12 and 30 is 42.", "1+1=2, 2+2=4, 4+4=8"]
    texts.append(" ".join(chat(f"What is {i}+{i}?") + str(2 * i) for i in range(12)))
    return texts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(python: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            python,
            "-c",
            "from gauge.cli.main import main; main()",
            "serve",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gauge serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("gauge serve did not become healthy in 180 s")


# -- lm-eval side ------------------------------------------------------------------------------


def lm_eval_scores(lm: Any, pairs: list[tuple[str, str]], texts: list[str]) -> dict[str, Any]:
    from lm_eval.api.instance import Instance

    ll = [
        Instance("loglikelihood", {}, (ctx, cont), i, ("parity", i, 1))
        for i, (ctx, cont) in enumerate(pairs)
    ]
    rolling = [
        Instance("loglikelihood_rolling", {}, (text,), i, ("parity", i, 1))
        for i, text in enumerate(texts)
    ]
    pair_out = lm.loglikelihood(ll, disable_tqdm=True)
    roll_out = lm.loglikelihood_rolling(rolling, disable_tqdm=True)
    return {
        "pairs": [(float(lp), bool(g)) for lp, g in pair_out],
        "rolling": [float(v) for v in roll_out],
    }


def hflm_scores(
    pairs: list[tuple[str, str]], texts: list[str], batch_size: int = 1
) -> dict[str, Any]:
    """HFLM's scores. batch_size 1 is the reference: with 8, lm-eval 0.4.13 scores the
    windows of a long text differently when another text shares its first window
    (its logits cache, group_by="contexts"), so its own results depend on batching."""
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(TINY), device="cpu", batch_size=batch_size)
    return lm_eval_scores(lm, pairs, texts)


def local_completions_scores(
    base: str, pairs: list[tuple[str, str]], texts: list[str], **extra: Any
) -> dict[str, Any]:
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    lm = LocalCompletionsAPI(
        base_url=base + "/v1/completions",
        tokenizer_backend="huggingface",
        tokenizer=str(TINY),
        model="gauge-tiny",
        **extra,
    )
    return lm_eval_scores(lm, pairs, texts)


# -- gauge side --------------------------------------------------------------------------------


async def gauge_scores(
    model_name: str, pairs: list[tuple[str, str]], texts: list[str], **kwargs: Any
) -> dict[str, Any]:
    from gauge import get_model

    model = get_model(model_name, memoize=False, **kwargs)
    try:
        out = await model.loglikelihood(pairs)
        rolling = await model.loglikelihood_rolling(texts)
    finally:
        await model.close()
    return {
        "pairs": [(float(lp), bool(g)) for lp, g in out],
        "rolling": [float(v) for v in rolling],
    }


# -- comparison --------------------------------------------------------------------------------


def compare(name: str, ref: dict[str, Any], got: dict[str, Any], tolerance: float) -> bool:
    """Print the largest per-item differences; True when every item is within tolerance.

    An item passes when |d| <= tolerance, or |d| <= 1e-6 * |logprob|: HFLM sums a
    continuation's logprobs in float32 (`logits.sum()`), which for a long text of
    ~-1500 nats is itself off by ~1e-4; gauge sums in float64.
    """
    pairs = [(a[0], b[0]) for a, b in zip(ref["pairs"], got["pairs"], strict=True)]
    rolling = list(zip(ref["rolling"], got["rolling"], strict=True))
    greedy = sum(a[1] != b[1] for a, b in zip(ref["pairs"], got["pairs"], strict=True))

    def worst(items: list[tuple[float, float]]) -> tuple[float, float]:
        if not items:
            return 0.0, 0.0
        return max(abs(a - b) for a, b in items), max(
            abs(a - b) / max(1.0, abs(a)) for a, b in items
        )

    pair_abs, pair_rel = worst(pairs)
    roll_abs, roll_rel = worst(rolling)
    ok = greedy == 0 and all(
        abs(a - b) <= tolerance or abs(a - b) <= 1e-6 * abs(a) for a, b in pairs + rolling
    )
    print(
        f"  {name:<50} pairs {len(pairs):>3} max|d| {pair_abs:.1e} (rel {pair_rel:.0e})  "
        f"rolling {len(rolling):>2} max|d| {roll_abs:.1e} (rel {roll_rel:.0e})  "
        f"greedy mismatches {greedy}  {'ok' if ok else 'DIFFERS'}"
    )
    return ok


# -- TemplateAPI contract ----------------------------------------------------------------------


class FakeScoreAPI(BaseHTTPRequestHandler):
    """A made-up JSON API: {"inputs": [[ids]]} -> per-input ids; {"prompts"} -> echoes."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("X-Key") != "k":
            self.send_response(401)
            self.end_headers()
            return
        if "inputs" in body:
            out: dict[str, Any] = {"results": [{"ids": ids} for ids in body["inputs"]]}
        else:
            prompts = body["prompts"] if isinstance(body["prompts"], list) else [body["prompts"]]
            out = {"texts": [f"echo:{p}" for p in prompts]}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


# The same method bodies, pasted into both base classes below, declared the way
# lm-eval's own TemplateAPI declares them (static parsers, cached properties).
def _create_payload(self, messages, generate=False, gen_kwargs=None, seed=1234, eos=None, **kw):  # type: ignore[no-untyped-def]
    if generate:
        return {"prompts": messages, "max": (gen_kwargs or {}).get("max_gen_toks"), "seed": seed}
    return {"inputs": messages, "seed": seed}


def _create_payload_strict(self, messages, generate=False, gen_kwargs=None, seed=1234, eos=None):  # type: ignore[no-untyped-def]
    # Exactly the keywords lm-eval passes (no **kwargs): valid for lm-eval.
    return _create_payload(self, messages, generate, gen_kwargs, seed, eos)


def _parse_generations(outputs, **kwargs):  # type: ignore[no-untyped-def]
    outs = outputs if isinstance(outputs, list) else [outputs]
    return [text for out in outs for text in out["texts"]]


def _parse_logprobs(outputs, tokens=None, ctxlens=None, **kwargs):  # type: ignore[no-untyped-def]
    # lm-eval passes [body] (sync path) or body (async path); handle both, as its
    # own LocalCompletionsAPI does. A made-up score: -0.5 per continuation token.
    outs = outputs if isinstance(outputs, list) else [outputs]
    results = [r for out in outs for r in out["results"]]
    return [
        (-0.5 * (len(r["ids"]) - c), len(r["ids"]) - c <= 1)
        for r, c in zip(results, ctxlens, strict=True)
    ]


def template_contract(pairs: list[tuple[str, str]]) -> float:
    """lm-eval TemplateAPI subclasses vs gauge TemplateAPI subclasses with the same bodies."""
    import functools

    from lm_eval.api.instance import Instance
    from lm_eval.models.api_models import TemplateAPI as LmTemplate

    from gauge import get_model
    from gauge.model.providers.template import TemplateAPI as GaugeTemplate
    from gauge.model.registry import modelapi

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeScoreAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/score"
    contexts = [c for c, _ in pairs[:8] if c]
    worst = 0.0
    try:
        for variant, payload in (("**kwargs", _create_payload), ("strict", _create_payload_strict)):
            bodies: dict[str, Any] = {
                "_create_payload": payload,
                "parse_generations": staticmethod(_parse_generations),
                "parse_logprobs": staticmethod(_parse_logprobs),
                "header": functools.cached_property(lambda self: {"X-Key": self.api_key}),
                "api_key": functools.cached_property(lambda self: "k"),
            }
            lm_cls = type(f"LmFake_{variant}", (LmTemplate,), dict(bodies))
            args = {"base_url": url, "model": "fake", "tokenizer_backend": "huggingface"}
            lm = lm_cls(**args, tokenizer=str(TINY))
            # Generation prompts as text (gauge's message_format = "text").
            lm_text = lm_cls(**args, tokenizer=str(TINY), tokenized_requests=False)
            ref = lm.loglikelihood(
                [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)],
                disable_tqdm=True,
            )
            until = {"until": ["\n\n"], "max_gen_toks": 8}
            ref_gen = lm_text.generate_until(
                [Instance("generate_until", {}, (c, until), i) for i, c in enumerate(contexts)],
                disable_tqdm=True,
            )
            name = f"parity-fake-{variant.strip('*')}"
            gauge_cls = modelapi(name)(
                type(f"GaugeFake_{variant}", (GaugeTemplate,), {**bodies, "message_format": "text"})
            )
            assert gauge_cls is not None

            async def run(model_name: str) -> tuple[list[tuple[float, bool]], list[str]]:
                model = get_model(
                    model_name, base_url=url, tokenizer=str(TINY), max_gen_toks=8, memoize=False
                )
                try:
                    scores = await model.loglikelihood(pairs)
                    texts = [(await model.generate(c)).completion for c in contexts]
                    return scores, texts
                finally:
                    await model.close()

            try:
                got, got_gen = asyncio.run(run(f"{name}/fake"))
            except Exception as ex:
                print(f"  TemplateAPI ({variant} _create_payload): gauge FAILED: {ex!r}")
                worst = float("inf")
                continue
            diff = max(abs(a[0] - b[0]) for a, b in zip(ref, got, strict=True))
            greedy = sum(a[1] != b[1] for a, b in zip(ref, got, strict=True))
            texts = sum(a != b for a, b in zip(ref_gen, got_gen, strict=True))
            print(
                f"  {'TemplateAPI, _create_payload ' + variant + ' (lm-eval vs gauge)':<50} "
                f"pairs {len(pairs):>3} max|d| {diff:.1e}  greedy mismatches {greedy}  "
                f"generations {len(contexts)} differing {texts}"
            )
            worst = max(worst, diff + greedy + texts)
    finally:
        server.shutdown()
    return worst


# -- acc / acc_norm ----------------------------------------------------------------------------


def mc_docs(count: int = 200) -> list[tuple[str, list[str], int]]:
    """Four-way arithmetic questions whose choices differ in length (so acc_norm matters)."""
    docs = []
    for i in range(count):
        a, b = (i * 7) % 50, (i * 13) % 40
        right = a + b
        choices = [str(right), str(right + 1), f"{right} or {right + 2}", str(right * 11)]
        gold = i % 4
        choices[0], choices[gold] = choices[gold], choices[0]
        docs.append((chat(f"What is {a}+{b}?"), choices, gold))
    return docs


def multiple_choice(lls_source: Any) -> int:
    """lm-eval's ConfigurableTask.process_results (multiple_choice) against gauge's own
    multiple_choice_loglikelihood solver with acc / acc_norm scorers, fed the same
    loglikelihoods (lm-eval HFLM's) through a table-backed ModelAPI."""
    import tempfile

    import numpy as np
    import orjson

    from gauge import Task
    from gauge.dataset import Sample
    from gauge.evaluation.loglikelihood import acc, acc_norm, multiple_choice_loglikelihood
    from gauge.evaluation.runner import eval_async
    from gauge.model.api import ModelAPI
    from gauge.model.registry import modelapi, unregister
    from gauge.model.scoring import Loglikelihood

    docs = mc_docs()
    requests = [(ctx, " " + c) for ctx, choices, _ in docs for c in choices]  # target_delimiter
    table = dict(zip(requests, lls_source(requests), strict=True))

    class TableAPI(ModelAPI):
        supports_loglikelihood = True

        async def generate(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("multiple choice by loglikelihood generates nothing")

        async def loglikelihood(self, reqs: Any, config: Any) -> list[Loglikelihood]:
            return [Loglikelihood(*table[(r.context, r.continuation)]) for r in reqs]

    lm_eval_picks = []
    for context, choices, _ in docs:
        lls = np.array([table[(context, " " + c)][0] for c in choices])
        completion_len = np.array([float(len(i)) for i in choices])
        lm_eval_picks.append((int(np.argmax(lls)), int(np.argmax(lls / completion_len))))

    samples = [
        Sample(input=ctx, choices=choices, target="ABCD"[gold], id=str(i))
        for i, (ctx, choices, gold) in enumerate(docs)
    ]
    task = Task(samples, solver=multiple_choice_loglikelihood(), scorer=[acc(), acc_norm()])
    modelapi("lmeval-table")(TableAPI)
    try:
        with tempfile.TemporaryDirectory() as logs:
            [result] = asyncio.run(
                eval_async(task, "lmeval-table/hflm", log_dir=logs, display=False)
            )
            lines = [orjson.loads(x) for x in Path(result.journal).read_bytes().splitlines()]
    finally:
        unregister("lmeval-table")
    records = {int(r["id"]): r for r in lines if r["type"] == "sample"}
    mismatches = 0
    for i, (pick, pick_norm) in enumerate(lm_eval_picks):
        scores = records[i]["scores"]
        mismatches += scores["acc"]["answer"] != "ABCD"[pick]
        mismatches += scores["acc_norm"]["answer"] != "ABCD"[pick_norm]
    lm_acc = np.mean([p == gold for (p, _), (_, _, gold) in zip(lm_eval_picks, docs, strict=True)])
    lm_norm = np.mean([p == gold for (_, p), (_, _, gold) in zip(lm_eval_picks, docs, strict=True)])
    differ = sum(p != q for p, q in lm_eval_picks)
    print(
        f"  {'acc / acc_norm: lm-eval rule vs gauge solver':<50} docs {len(docs):>3} "
        f"pick mismatches {mismatches}  acc {lm_eval_acc_text(lm_acc, result, 'acc')}  "
        f"acc_norm {lm_eval_acc_text(lm_norm, result, 'acc_norm')}  "
        f"(acc and acc_norm picks differ on {differ} docs)"
    )
    off = abs(result.metrics["acc"]["accuracy"] - lm_acc) + abs(
        result.metrics["acc_norm"]["accuracy"] - lm_norm
    )
    return mismatches + (off > 1e-12)


def lm_eval_acc_text(lm_value: float, result: Any, name: str) -> str:
    return f"{lm_value:.3f}/{result.metrics[name]['accuracy']:.3f}"


def long_inputs() -> tuple[list[tuple[str, str]], list[str]]:
    """Inputs longer than gauge-tiny's 512-token context: truncation and rolling windows."""
    history = "".join(chat(f"What is {i}+{i + 1}?") + f"{2 * i + 1}<|eos|>" for i in range(40))
    pairs = [(history + chat("What is 2+3?"), "5"), (history + chat("What is 9+9?"), "18")]
    pairs.append((history[:900], history[900:1100]))
    return pairs, [history, history * 2]


def run_all(
    base: str, pairs: list[tuple[str, str]], texts: list[str], long: bool
) -> dict[str, Any]:
    """Every scorer on the same inputs; `long` sets the context limits explicitly.

    lm-eval's API models keep max_length - 1 prompt tokens (they generate one);
    gauge's completions client sends max_tokens 0 and keeps max_length. So
    lm-eval's max_length=512 (the server's context) and gauge's max_length=511
    send the same token windows.
    """
    lm_extra: dict[str, Any] = {"max_length": 512} if long else {}
    gauge_extra: dict[str, Any] = {"max_length": 511} if long else {}
    client = "openai-api-completions/local/gauge-tiny"
    return {
        "lm-eval local-completions -> gauge serve": local_completions_scores(
            base, pairs, texts, **lm_extra
        ),
        "lm-eval local-completions batch_size=8": local_completions_scores(
            base, pairs, texts, batch_size=8, **lm_extra
        ),
        "gauge hf/gauge-tiny (in process)": asyncio.run(
            gauge_scores("hf/gauge-tiny", pairs, texts)
        ),
        "gauge completions client, -M tokenizer=": asyncio.run(
            gauge_scores(
                client, pairs, texts, base_url=base + "/v1", tokenizer=str(TINY), **gauge_extra
            )
        ),
        # gauge serve has no GET /tokenizer_info, and gauge-tiny adds no bos, so the
        # client cannot learn the prefix token from the server: give it.
        "gauge completions client, server /tokenize": asyncio.run(
            gauge_scores(
                client, pairs, texts, base_url=base + "/v1", prefix_token_id=1, **gauge_extra
            )
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gauge-python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    pairs, texts = make_pairs(), make_texts()
    ok = True
    proc, base = start_server(args.gauge_python)
    try:
        print(
            f"short inputs: {len(pairs)} pairs, {len(texts)} rolling texts; reference lm-eval HFLM"
        )
        ref = hflm_scores(pairs, texts)
        runs = run_all(base, pairs, texts, long=False)
        for name, got in runs.items():
            ok = compare(name, ref, got, args.tolerance) and ok
        print("  gauge against gauge (the issue's bar):")
        ok = (
            compare(
                "completions client vs hf in process",
                runs["gauge hf/gauge-tiny (in process)"],
                runs["gauge completions client, -M tokenizer="],
                args.tolerance,
            )
            and ok
        )

        long_pairs, long_texts = long_inputs()
        print(f"long inputs (> 512 tokens): {len(long_pairs)} pairs, {len(long_texts)} texts")
        long_ref = hflm_scores(long_pairs, long_texts)
        compare(
            "(info) lm-eval HFLM batch_size=8 vs batch_size=1",
            long_ref,
            hflm_scores(long_pairs, long_texts, batch_size=8),
            args.tolerance,
        )
        long_runs = run_all(base, long_pairs, long_texts, long=True)
        ok = (
            compare(
                "gauge hf/gauge-tiny vs HFLM",
                long_ref,
                long_runs.pop("gauge hf/gauge-tiny (in process)"),
                args.tolerance,
            )
            and ok
        )
        lm_api = long_runs.pop("lm-eval local-completions -> gauge serve")
        for name, got in long_runs.items():
            ok = compare(f"{name} vs lm-eval local-completions", lm_api, got, args.tolerance) and ok

        lookup = {p: s for p, s in zip(pairs, ref["pairs"], strict=True)}

        def lls(items: list[tuple[str, str]]) -> list[tuple[float, bool]]:
            missing = [p for p in items if p not in lookup]
            if missing:
                lookup.update(zip(missing, lm_eval_scores_hf_cached(missing), strict=True))
            return [lookup[p] for p in items]

        ok = multiple_choice(lls) == 0 and ok
        ok = template_contract(pairs) <= args.tolerance and ok
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


_HFLM: Any = None


def lm_eval_scores_hf_cached(items: list[tuple[str, str]]) -> list[tuple[float, bool]]:
    global _HFLM
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    if _HFLM is None:
        _HFLM = HFLM(pretrained=str(TINY), device="cpu", batch_size=1)
    out = _HFLM.loglikelihood(
        [Instance("loglikelihood", {}, p, i) for i, p in enumerate(items)], disable_tqdm=True
    )
    return [(float(lp), bool(g)) for lp, g in out]


if __name__ == "__main__":
    sys.exit(main())
