"""Check the bundled ``gauge-tiny`` model on the held-out arithmetic pairs.

Loads the model with plain ``AutoModelForCausalLM`` / ``AutoTokenizer`` from the local
directory (offline), renders each held-out user message with the tokenizer's chat
template, generates greedily (``max_new_tokens=4``) both batched with left padding and
one prompt at a time, decodes only the new tokens (skipping special tokens), strips, and
reports exact-match accuracy for both. Exits non-zero if accuracy is below 98% or if the
batched and unbatched answers differ.

Usage::

    python scripts/check_tiny_model.py [--model DIR] [--data FILE] [--no-unbatched]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "src" / "gauge" / "assets" / "gauge-tiny"
DEFAULT_DATA = REPO_ROOT / "examples" / "data" / "arithmetic.jsonl"
THRESHOLD = 0.98


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--no-unbatched", action="store_true", help="skip the one-by-one pass")
    args = ap.parse_args()

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
    tokenizer.padding_side = "left"
    model: Any = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True)
    model.eval()

    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines()]
    prompts: list[str] = [
        str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": row["input"]}],
                add_generation_prompt=True,
                tokenize=False,
            )
        )
        for row in rows
    ]
    print(f"model: {args.model}")
    print(f"examples: {len(rows)}; prompt example: {prompts[0]!r}")

    def generate(batch: list[str]) -> list[str]:
        enc = tokenizer(batch, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=4,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]

    def score(answers: list[str]) -> float:
        ok = sum(a == row["target"] for a, row in zip(answers, rows, strict=True))
        return ok / len(rows)

    t0 = time.time()
    batched: list[str] = []
    for i in range(0, len(prompts), args.batch_size):
        batched.extend(generate(prompts[i : i + args.batch_size]))
    acc = score(batched)
    print(f"batched (left padding) accuracy: {acc:.2%}  ({time.time() - t0:.1f}s)")
    failed = acc < THRESHOLD

    wrong = [(r["input"], r["target"], a) for r, a in zip(rows, batched, strict=True)]
    wrong = [w for w in wrong if w[1] != w[2]]
    for inp, target, got in wrong[:10]:
        print(f"  wrong: {inp!r} target {target!r} got {got!r}")

    if not args.no_unbatched:
        t0 = time.time()
        single = [generate([p])[0] for p in prompts]
        acc1 = score(single)
        diff = sum(a != b for a, b in zip(batched, single, strict=True))
        print(f"unbatched accuracy: {acc1:.2%}  ({time.time() - t0:.1f}s)")
        print(f"batched vs unbatched answers differing: {diff}")
        failed = failed or acc1 < THRESHOLD or diff > 0

    print("FAIL" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
