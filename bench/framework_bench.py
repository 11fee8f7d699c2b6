"""The same small task on a framework's own provider and through gauge, in one run.

Scenarios (each runs both sides in this process on the bundled hf/gauge-tiny, CPU,
offline; one untimed warm-up of each side first, then `--repeats` timed runs of each,
alternating, and the median wall time of the whole eval call):
  inspect   Inspect AI: an arithmetic task (generate + match) on Inspect's `hf`
            provider (do_sample=False) and on `gauge/hf/gauge-tiny`
  lm-eval   lm-evaluation-harness: generate_until (exact_match, `hf` with
            --apply_chat_template), multiple_choice (acc) and loglikelihood_rolling
            (byte_perplexity) on lm-eval's `hf` model (batch_size 1, its default, and 32)
            and on `--model gauge`; models built once, outside the timed runs

Scores must agree: the per-sample answers (generation) and accuracies are compared
exactly, loglikelihoods and perplexity to 1e-4.

    .venv/bin/python bench/framework_bench.py                 # both, 100 samples
    .venv/bin/python bench/framework_bench.py inspect -n 200 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "src" / "gauge" / "assets" / "gauge-tiny"
DATA = ROOT / "examples" / "data" / "arithmetic.jsonl"
SCENARIOS = ("inspect", "lm-eval")


def rows(n: int) -> list[dict[str, Any]]:
    with DATA.open() as file:
        return [json.loads(line) for _, line in zip(range(n), file, strict=False)]


def timed(sides: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Any]:
    """Warm each side up once, then time `repeats` runs of each, alternating."""
    results = {name: run() for name, run in sides.items()}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, run in sides.items():
            started = time.perf_counter()
            results[name] = run()
            seconds[name].append(time.perf_counter() - started)
    return {name: (results[name], statistics.median(seconds[name])) for name in sides}


def inspect_scenario(n: int, repeats: int, logs: Path) -> dict[str, Any]:
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate

    samples = [Sample(input=r["input"], target=r["target"]) for r in rows(n)]

    def run(model: str, **model_args: Any) -> Any:
        task = Task(dataset=samples, solver=generate(), scorer=match())
        [log] = eval(task, model=model, model_args=model_args, log_dir=str(logs),
                     display="none", max_tokens=8)  # fmt: skip
        return log

    own_args = {"model_path": str(TINY), "device": "cpu", "do_sample": False}
    timings = timed(
        {
            "inspect hf": lambda: run("hf/gauge-tiny", **own_args),
            "gauge": lambda: run("gauge/hf/gauge-tiny"),
        },
        repeats,
    )
    (own, own_s), (ours, ours_s) = timings["inspect hf"], timings["gauge"]

    def answers(log: Any) -> list[tuple[str, Any]]:
        return [(s.output.completion, s.scores["match"].value) for s in log.samples]

    return {
        "samples": n,
        "accuracy (inspect hf, gauge)": [
            log.results.scores[0].metrics["accuracy"].value for log in (own, ours)
        ],
        "same answers": answers(own) == answers(ours),
        "seconds (inspect hf, gauge)": [round(own_s, 2), round(ours_s, 2)],
        "gauge / inspect hf": round(ours_s / own_s, 2),
    }


def write_tasks(folder: Path, n: int) -> None:
    data = folder / "sums.jsonl"
    with data.open("w") as file:
        for row in rows(n):
            total = int(row["target"])
            choices = [str(total + 1), str(total), str(total + 10)]
            text = f"<|user|>{row['input']}<|assistant|>{total}<|eos|>"
            file.write(json.dumps(row | {"choices": choices, "answer": 1, "text": text}) + "\n")
    head = (
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    )
    metric = "metric_list:\n  - metric: {}\n    aggregation: {}\n    higher_is_better: {}\n"
    (folder / "gen.yaml").write_text(
        "task: bench_gen\n" + head + "output_type: generate_until\n"
        'doc_to_text: "{{input}}"\ndoc_to_target: "{{target}}"\n'
        'generation_kwargs:\n  until: ["<|eos|>"]\n  max_gen_toks: 8\n  do_sample: false\n'
        + metric.format("exact_match", "mean", "true")
    )
    (folder / "mc.yaml").write_text(
        "task: bench_mc\n" + head + "output_type: multiple_choice\n"
        'doc_to_text: "<|user|>{{input}}<|assistant|>"\ndoc_to_choice: choices\n'
        'doc_to_target: answer\ntarget_delimiter: ""\n' + metric.format("acc", "mean", "true")
    )
    (folder / "ppl.yaml").write_text(
        "task: bench_ppl\n" + head + "output_type: loglikelihood_rolling\n"
        'doc_to_text: ""\ndoc_to_target: "{{text}}"\n'
        + metric.format("byte_perplexity", "weighted_perplexity", "false")
    )


def lm_eval_scenario(n: int, repeats: int, folder: Path) -> dict[str, Any]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from gauge.integrations.lm_eval_model import GaugeLM

    write_tasks(folder, n)
    manager = TaskManager(include_path=str(folder))
    # Models are built once, outside the timed runs: what is timed is the evaluation.
    models = {
        "lm-eval hf, batch_size=1 (its default)": HFLM(pretrained=str(TINY), device="cpu"),
        "lm-eval hf, batch_size=32": HFLM(pretrained=str(TINY), device="cpu", batch_size=32),
        "gauge": GaugeLM(model="hf/gauge-tiny"),
    }

    def run(lm: Any, tasks: list[str], chat: bool = False) -> dict[str, Any]:
        result = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager,
                                         log_samples=True, apply_chat_template=chat)  # fmt: skip
        assert result is not None
        return result

    def own(lm: Any) -> dict[str, Any]:
        # lm-eval's hf templates chat turns only with --apply_chat_template (gauge always
        # does for a chat model's generate): the generation task is compared that way.
        gen = run(lm, ["bench_gen"], chat=True)
        scored = run(lm, ["bench_mc", "bench_ppl"])
        return {"results": gen["results"] | scored["results"],
                "samples": gen["samples"] | scored["samples"]}  # fmt: skip

    # Every side makes the same two calls (gauge takes --apply_chat_template as turns).
    sides: dict[str, Callable[[], Any]] = {
        name: (lambda lm=lm: own(lm)) for name, lm in models.items()
    }
    timings = timed(sides, repeats)
    metrics = {
        "bench_gen": "exact_match,none",
        "bench_mc": "acc,none",
        "bench_ppl": "byte_perplexity,none",
    }
    ours = timings["gauge"][0]

    def logprobs(result: dict[str, Any]) -> list[float]:
        return [c[0][0] for s in result["samples"]["bench_mc"] for c in s["resps"]]

    def generations(result: dict[str, Any]) -> list[Any]:
        return [s["resps"] for s in result["samples"]["bench_gen"]]

    report: dict[str, Any] = {"samples per task": n}
    for name, (result, seconds) in timings.items():
        report[name] = {
            "scores": {t: round(float(result["results"][t][m]), 6) for t, m in metrics.items()},
            "same generations as gauge": generations(result) == generations(ours),
            "largest loglikelihood difference from gauge": max(
                abs(a - b) for a, b in zip(logprobs(result), logprobs(ours), strict=True)
            ),
            "seconds": round(seconds, 2),
            "gauge / this": round(timings["gauge"][1] / seconds, 2),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=[])
    parser.add_argument("-n", type=int, default=100, help="samples per task")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    warnings.simplefilter("ignore")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenarios or SCENARIOS:
            folder = Path(tmp) / name
            folder.mkdir()
            run = inspect_scenario if name == "inspect" else lm_eval_scenario
            print(name, json.dumps(run(args.n, args.repeats, folder), indent=1), flush=True)


if __name__ == "__main__":
    sys.exit(main())
