"""hf provider batching vs one raw `model.generate` on the same batch.

For N prompts (held-out arithmetic questions) the same weights run:

  raw    one left-padded `model.generate(max_new_tokens=M, do_sample=False)` call
         on all N prompts, plus one `batch_decode` of the answers (the ceiling: no
         scheduling, no per-request work);
  gauge  N concurrent `Model.generate` calls through the full pipeline
         (retry, connection slots, deadlines, batching engine, per-row stopping,
         exact usage, output objects).

Both are greedy and produce the same tokens; throughput is generated tokens per
second of wall time, and the ratio gauge/raw must be >= 0.9. The single-request
rows show the latency of a lone request, which an idle window (Inspect polls and
sleeps up to 1 s) would inflate.

The raw call runs on gauge's engine thread (submitted from the event loop and
awaited, so it pays the same two thread hand-offs as a gauge batch). torch's
OpenMP thread team belongs to the thread that calls it: with raw on the main
thread and gauge on its worker, two teams take turns on the same cores and each
run starts behind the other's spinning threads, which moved the ratio by a few
percent either way. Same model, same batch, same tokens, same thread.

    .venv/bin/python bench/hf_batching.py                       # bundled gauge-tiny
    .venv/bin/python bench/hf_batching.py --n 32 --repeats 7 --model-path DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "arithmetic.jsonl"


def prompts(n: int) -> list[str]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    return [rows[i % len(rows)]["input"] for i in range(n)]


def raw_batch(model: Any, tokenizer: Any, texts: list[str], max_new_tokens: int) -> int:
    """One raw generate on the batch; returns generated tokens (EOS counted, pad not)."""
    import torch

    rendered = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False
        )
        for t in texts
    ]
    enc = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    enc = enc.to(model.device)
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    eos = tokenizer.eos_token_id
    tokenizer.batch_decode(new, skip_special_tokens=True)  # the answers, as a caller needs them
    return sum(row.index(eos) + 1 if eos in row else len(row) for row in new)


async def gauge_batch(model: Any, texts: list[str], max_tokens: int) -> tuple[int, float, float]:
    """N concurrent Model.generate calls: (output tokens, first result s, all results s)."""
    from gauge.model.config import GenerateConfig

    # One batch of N, like the raw call (the engine's cap is max_connections).
    config = GenerateConfig(max_tokens=max_tokens, max_connections=max(len(texts), 1))
    start = time.perf_counter()
    first: list[float] = []

    async def one(text: str) -> int:
        output = await model.generate(text, config=config)
        if not first:
            first.append(time.perf_counter() - start)
        return output.usage.output_tokens

    tokens = sum(await asyncio.gather(*(one(t) for t in texts)))
    return tokens, first[0], time.perf_counter() - start


def best_of(times: list[float]) -> tuple[float, float]:
    return min(times), statistics.median(times)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="concurrent requests (one batch)")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--model-path", help="a save_pretrained directory (default: gauge-tiny)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch CPU threads for both (1 makes the CPU figures exact: no helper threads)",
    )
    ap.add_argument(
        "--raw-on-main",
        action="store_true",
        help="run raw on the main thread, as this bench did before (see the module doc)",
    )
    args = ap.parse_args()

    import torch
    import transformers

    from gauge.model.factory import get_model
    from gauge.model.providers.hf import HuggingFaceAPI
    from gauge.model.providers.hf.loading import bundled_path

    torch.set_num_threads(args.threads)
    path = args.model_path or str(bundled_path())
    # threads is applied on the engine's worker thread, where raw runs too.
    model_args = {
        "model_path": path,
        "device": args.device,
        "dtype": "float32",
        "threads": str(args.threads),
    }
    gauge_model = get_model("hf/local", **model_args)
    api = gauge_model.api
    assert isinstance(api, HuggingFaceAPI)
    await api.load()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    raw_model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    raw_model.to(args.device).eval()
    texts = prompts(args.n)

    worker_cpu: list[float] = []  # CPU of the calling (worker) thread per raw or gauge batch

    def timed(fn: Any) -> Any:
        def run(*a: Any) -> Any:
            cpu = time.thread_time()
            try:
                return fn(*a)
            finally:
                worker_cpu.append(time.thread_time() - cpu)

        return run

    # Instrument gauge's batch function (bench only) to read its worker-thread CPU.
    api.engine._run_batch = timed(api.engine._run_batch)

    async def raw(batch: list[str]) -> int:
        run = timed(lambda: raw_batch(raw_model, tokenizer, batch, args.max_tokens))
        if args.raw_on_main:
            return int(run())
        # On the engine's worker thread, like gauge's batches (see the module doc).
        return int(await api.engine.run_in_worker(run))

    # Warm up both paths (allocator, kernels, tokenizer caches).
    await raw(texts)
    await gauge_batch(gauge_model, texts, args.max_tokens)

    raw_times, gauge_times, firsts, sizes, loop_cpu = [], [], [], [], []
    raw_cpu, gauge_cpu = [], []
    raw_tokens = gauge_tokens = 0
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        t0 = time.perf_counter()
        raw_tokens = await raw(texts)
        raw_times.append(time.perf_counter() - t0)
        raw_cpu.append(worker_cpu[-1])
        before = len(api.engine.batch_sizes)
        cpu = time.thread_time()  # the event loop's own CPU (this thread only)
        gauge_tokens, first, total = await gauge_batch(gauge_model, texts, args.max_tokens)
        loop_cpu.append(time.thread_time() - cpu)
        gauge_cpu.append(worker_cpu[-1])
        gauge_times.append(total)
        firsts.append(first)
        sizes.extend(list(api.engine.batch_sizes)[before:])

    single_raw, single_gauge = [], []
    for text in texts[: args.repeats]:
        t0 = time.perf_counter()
        await raw([text])
        single_raw.append(time.perf_counter() - t0)
        _, _, total = await gauge_batch(gauge_model, [text], args.max_tokens)
        single_gauge.append(total)

    # Rounds are interleaved: a round's raw and gauge runs see the same machine load.
    paired = statistics.median(r / g for r, g in zip(raw_times, gauge_times, strict=True))
    cpu_ratio = statistics.median(raw_cpu) / (
        statistics.median(gauge_cpu) + statistics.median(loop_cpu)
    )
    raw_best, raw_med = best_of(raw_times)
    gauge_best, gauge_med = best_of(gauge_times)
    lines = [
        f"model: {path}; N={args.n} prompts; max_tokens={args.max_tokens}; "
        f"repeats={args.repeats}; torch threads={args.threads}; python {sys.version.split()[0]}; "
        f"load average {os.getloadavg()[0]:.2f}; raw on the "
        f"{'main' if args.raw_on_main else 'worker'} thread",
        f"generated tokens per round: raw {raw_tokens}, gauge {gauge_tokens}",
        f"gauge batch sizes seen: {sorted(set(sizes))}",
        f"raw   batch: best {raw_best * 1e3:.1f} ms, median {raw_med * 1e3:.1f} ms "
        f"({raw_tokens / raw_med:.0f} tok/s median)",
        f"gauge batch: best {gauge_best * 1e3:.1f} ms, median {gauge_med * 1e3:.1f} ms "
        f"({gauge_tokens / gauge_med:.0f} tok/s median)",
        f"throughput ratio gauge/raw: {raw_med / gauge_med:.3f} (medians), "
        f"{raw_best / gauge_best:.3f} (bests), {paired:.3f} (median of per-round ratios)",
        f"CPU per batch (medians; calling thread only, not torch's helper threads): raw "
        f"{statistics.median(raw_cpu) * 1e3:.2f} ms on its thread; gauge "
        f"{statistics.median(gauge_cpu) * 1e3:.2f} ms on the worker + "
        f"{statistics.median(loop_cpu) * 1e3:.2f} ms on the event loop "
        f"({statistics.median(loop_cpu) / args.n * 1e6:.1f} us per request); "
        f"raw/gauge CPU {cpu_ratio:.3f}",
        f"gauge first result of the batch: median {statistics.median(firsts) * 1e3:.1f} ms",
        f"single request: raw median {statistics.median(single_raw) * 1e3:.1f} ms, "
        f"gauge median {statistics.median(single_gauge) * 1e3:.1f} ms "
        f"(ratio {statistics.median(single_raw) / statistics.median(single_gauge):.3f})",
    ]
    verdict = "MET" if paired >= 0.9 else "NOT MET"
    lines.append(f"TARGET gauge/raw throughput >= 0.9 (median of per-round ratios): {verdict}")
    print("\n".join(lines))
    await gauge_model.close()


if __name__ == "__main__":
    asyncio.run(main())
