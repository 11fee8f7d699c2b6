"""Train ``gauge-tiny``: the tiny chat model bundled with gauge for offline tests.

Design
------
* Task: the user message ``"What is A+B?"`` (integers ``0 <= A, B < 100``, no spaces)
  must be answered with exactly the decimal sum (``"92"``) followed by ``<|eos|>``.
* Tokenizer: character level, built with ``tokenizers`` (a ``WordLevel`` model whose
  vocabulary is the printable ASCII characters plus tab/newline/carriage return, a
  pre-tokenizer that isolates every character, and a ``Fuse`` decoder so that decoding
  concatenates characters without inserting spaces). Unknown characters map to
  ``<|unk|>``. Special tokens: ``<|pad|> <|bos|> <|eos|> <|unk|> <|system|> <|user|>
  <|assistant|>``. It is wrapped as a ``PreTrainedTokenizerFast`` and carries a Jinja
  chat template, so ``AutoTokenizer.from_pretrained`` + ``apply_chat_template`` work.
* Prompt format (what the chat template renders)::

      <|system|>{system}<|user|>{user}<|assistant|>{answer}<|eos|>

  The system turn is optional (role ``developer`` renders as system; other roles such
  as ``tool`` raise). Every 4th training batch puts a random English-like system
  message and/or an earlier question and answer before the question, so the model
  learns to ignore them: a caller that sends a system prompt or a multi-turn chat still
  gets the sum of the last question.
* Model: a 2-layer ``LlamaForCausalLM`` (hidden 64, 4 heads, MLP 256, ~138k parameters,
  float32, about 0.55 MB); no custom code. RoPE with position ids derived from the
  attention mask makes left-padded batched generation give the same answers as
  unbatched generation. Tied input/output embeddings keep the file small.
* Data: all 10,000 pairs (A, B); a seeded 10% (1,000 pairs) is held out, never trained
  on, and written to ``examples/data/arithmetic.jsonl``. Training uses the other 9,000
  pairs in a seeded shuffled order (2,000 steps of 128, AdamW, warmup + cosine), with
  the loss on the answer tokens and ``<|eos|>`` only.
* Reproducibility: every random source is seeded, data order is deterministic,
  ``torch.use_deterministic_algorithms(True)`` and ``torch.set_num_threads(2)``.

Usage::

    python scripts/train_tiny_model.py [--out DIR]

The default output is ``src/gauge/assets/gauge-tiny``. Runs in about 2.5 minutes on two
otherwise idle CPU cores. The held-out file is rewritten (identically) on every run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "src" / "gauge" / "assets" / "gauge-tiny"
HELDOUT_PATH = REPO_ROOT / "examples" / "data" / "arithmetic.jsonl"

SEED = 1234
N_HELDOUT = 1000

PAD, BOS, EOS, UNK = "<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"
SYSTEM, USER, ASSISTANT = "<|system|>", "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, SYSTEM, USER, ASSISTANT]
CHARS = ["\t", "\n", "\r"] + [chr(c) for c in range(32, 127)]

# Content may be a string, None, or a list of {"type": "text", "text": ...} parts (joined
# without a separator; non-text parts are ignored). Assistant turns end with <|eos|>.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}"
    "{%- set content = message['content'] -%}"
    "{%- elif message['content'] is none -%}"
    "{%- set content = '' -%}"
    "{%- else -%}"
    "{%- set ns = namespace(text='') -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{%- set ns.text = ns.text + part['text'] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- set content = ns.text -%}"
    "{%- endif -%}"
    "{%- if message['role'] in ('system', 'developer') -%}<|system|>{{ content }}"
    "{%- elif message['role'] == 'user' -%}<|user|>{{ content }}"
    "{%- elif message['role'] == 'assistant' -%}<|assistant|>{{ content }}<|eos|>"
    "{%- else -%}{{ raise_exception('Unsupported role: ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # One piece per character (including newlines), no normalization.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=[SYSTEM, USER, ASSISTANT],
        clean_up_tokenization_spaces=False,
        model_max_length=512,
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def check_tokenizer(tokenizer: PreTrainedTokenizerFast) -> None:
    text = "Hello, world!\n\tWhat is 7+85?  ~{}"
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    assert len(ids) == len(text), (len(ids), len(text))
    assert tokenizer.decode(ids) == text, repr(tokenizer.decode(ids))
    assert tokenizer.decode(tokenizer("92")["input_ids"]) == "92"
    assert tokenizer("é")["input_ids"] == [tokenizer.unk_token_id]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 7+85?"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<|user|>What is 7+85?<|assistant|>", prompt
    content: Any = [
        {"type": "text", "text": "What is "},
        {"type": "image", "image": "ignored"},
        {"type": "text", "text": "7+85?"},
    ]
    parts = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    assert parts == prompt, parts
    chat = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 1+2?"},
            {"role": "assistant", "content": "3"},
            {"role": "user", "content": "What is 7+85?"},
        ],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert chat == "<|system|>Be brief.<|user|>What is 1+2?<|assistant|>3<|eos|>" + prompt, chat
    with_none: Any = [
        {"role": "assistant", "content": None},
        {"role": "user", "content": "What is 7+85?"},
    ]
    empty = tokenizer.apply_chat_template(with_none, add_generation_prompt=True, tokenize=False)
    assert empty == "<|assistant|><|eos|>" + prompt, empty
    ids = tokenizer(prompt + "92" + EOS)["input_ids"]
    assert len(ids) == 1 + 13 + 1 + 2 + 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "What is 7+85?92"


def split_pairs(seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    pairs = [(a, b) for a in range(100) for b in range(100)]
    heldout = set(random.Random(seed).sample(pairs, N_HELDOUT))
    train = [p for p in pairs if p not in heldout]
    return train, sorted(heldout)


def write_heldout(pairs: list[tuple[int, int]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for a, b in pairs:
            row = {"id": f"{a}+{b}", "input": f"What is {a}+{b}?", "target": str(a + b)}
            f.write(json.dumps(row) + "\n")


WORDS = (  # noqa: SIM905
    "you are a an the helpful honest careful concise friendly assistant model bot tutor "
    "math expert answer answers question questions with only just one number numbers "
    "digit short brief reply respond always never be do not explain give final result "
    "please correctly carefully precisely sum add addition arithmetic problem user task "
    "test of to in and or for this that your it is"
).split()

# Not in the training distribution: used only to report robustness to a system turn.
EVAL_SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "Answer with a number only.",
    "Be concise.",
    "You are gauge-tiny, a small test model. Reply with the sum.",
]


def random_system_prompt(rng: random.Random) -> str:
    """A random English-like system message, so the model learns to ignore the system turn."""
    if rng.random() < 0.15:
        return "".join(rng.choice(CHARS[1:]) for _ in range(rng.randint(0, 30)))
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
    return text[0].upper() + text[1:] + rng.choice([".", "!", "", ":", "\n"])


def random_prefix(rng: random.Random, pairs: list[tuple[int, int]]) -> list[dict[str, str]]:
    """Turns before the question: a system message and/or an earlier question and answer."""
    turns = []
    kind = rng.random()
    if kind < 0.7:
        turns.append({"role": "system", "content": random_system_prompt(rng)})
    if kind > 0.4:
        c, d = rng.choice(pairs)
        turns.append({"role": "user", "content": f"What is {c}+{d}?"})
        turns.append({"role": "assistant", "content": str(c + d)})
    return turns


def encode_examples(
    tokenizer: PreTrainedTokenizerFast,
    pairs: list[tuple[int, int]],
    prefixes: list[list[dict[str, str]]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (answer + EOS only)."""
    seqs, labels = [], []
    for i, (a, b) in enumerate(pairs):
        user = [{"role": "user", "content": f"What is {a}+{b}?"}]
        if prefixes is not None:
            user = prefixes[i] + user
        prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": str(a + b)}], tokenize=False
        )
        p_ids = tokenizer(prompt)["input_ids"]
        f_ids = tokenizer(full)["input_ids"]
        assert f_ids[: len(p_ids)] == p_ids and f_ids[-1] == tokenizer.eos_token_id
        seqs.append(f_ids)
        labels.append([-100] * len(p_ids) + f_ids[len(p_ids) :])
    width = max(len(s) for s in seqs)
    n = len(seqs)
    ids = torch.full((n, width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    lab = torch.full((n, width), -100, dtype=torch.long)
    for i, (s, lb) in enumerate(zip(seqs, labels, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        lab[i, : len(s)] = torch.tensor(lb)
    return ids, mask, lab


@torch.no_grad()
def teacher_forced_accuracy(model, ids, mask, lab, batch_size: int = 1000) -> float:
    """Fraction of sequences whose every answer token is the argmax (== greedy exact match)."""
    model.eval()
    correct = 0
    for i in range(0, ids.shape[0], batch_size):
        logits = model(input_ids=ids[i : i + batch_size], attention_mask=mask[i : i + batch_size])
        pred = logits.logits[:, :-1].argmax(-1)
        target = lab[i : i + batch_size, 1:]
        ok = (pred == target) | (target == -100)
        correct += int(ok.all(dim=1).sum())
    model.train()
    return correct / ids.shape[0]


@torch.no_grad()
def generate_accuracy(model, tokenizer, pairs: list[tuple[int, int]]) -> float:
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"What is {a}+{b}?"}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for a, b in pairs
    ]
    model.eval()
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return sum(t.strip() == str(a + b) for t, (a, b) in zip(texts, pairs, strict=True)) / len(pairs)


def make_portable(out: Path) -> None:
    """Make the saved tokenizer config loadable by transformers 4.x as well as 5.x.

    transformers 5 writes ``tokenizer_class: TokenizersBackend``, an ``extra_special_tokens``
    list and the chat template only to ``chat_template.jinja``; 4.x wants
    ``PreTrainedTokenizerFast`` (an alias of the same class in 5.x),
    ``additional_special_tokens``, (before 4.49) ``chat_template`` in the JSON, and
    ``model_input_names`` so that it does not return ``token_type_ids``.
    """
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.pop("backend", None)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    extra = cfg.pop("extra_special_tokens", None) or [SYSTEM, USER, ASSISTANT]
    cfg["additional_special_tokens"] = list(extra)
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg["model_input_names"] = ["input_ids", "attention_mask"]  # 4.x adds token_type_ids
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for f in out.iterdir():
        f.chmod(0o644)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output model directory")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=256)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument(
        "--prefix-every",
        type=int,
        default=4,
        help="every Nth batch puts a system message and/or an earlier exchange first (0: never)",
    )
    args = ap.parse_args()

    t0 = time.time()
    seed_everything(args.seed)
    tokenizer = build_tokenizer()
    check_tokenizer(tokenizer)

    train_pairs, heldout_pairs = split_pairs(args.seed)
    write_heldout(heldout_pairs, HELDOUT_PATH)
    print(f"pairs: {len(train_pairs)} train, {len(heldout_pairs)} held out -> {HELDOUT_PATH}")
    tr_ids, tr_mask, tr_lab = encode_examples(tokenizer, train_pairs)
    ho_ids, ho_mask, ho_lab = encode_examples(tokenizer, heldout_pairs)
    probe = torch.arange(0, len(train_pairs), 9)  # fixed subset of training pairs

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.02,
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: LlamaForCausalLM, {args.layers} layers, hidden {args.hidden}, {n_params:,} params"
    )

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * progress))

    order_rng = random.Random(args.seed + 1)
    prefix_rng = random.Random(args.seed + 2)
    order: list[int] = []
    model.train()
    running = 0.0
    for step in range(args.steps):
        if len(order) < args.batch_size:
            perm = list(range(len(train_pairs)))
            order_rng.shuffle(perm)
            order.extend(perm)
        batch = order[: args.batch_size]
        del order[: args.batch_size]
        if args.prefix_every and step % args.prefix_every == args.prefix_every - 1:
            # Same pairs, each behind a random system message and/or an earlier exchange
            # (drawn from the training pairs); the loss stays on the final answer only.
            prefixes = [random_prefix(prefix_rng, train_pairs) for _ in batch]
            ids, mask, lab = encode_examples(tokenizer, [train_pairs[i] for i in batch], prefixes)
        else:
            idx = torch.tensor(batch)
            width = int(tr_mask[idx].sum(1).max())
            ids, mask, lab = tr_ids[idx, :width], tr_mask[idx, :width], tr_lab[idx, :width]
        out = model(input_ids=ids, attention_mask=mask, labels=lab)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = 0.9 * running + 0.1 * out.loss.item() if step else out.loss.item()
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            acc = teacher_forced_accuracy(model, tr_ids[probe], tr_mask[probe], tr_lab[probe])
            print(
                f"step {step + 1:5d}/{args.steps}  loss {running:.4f}  lr {lr_at(step):.2e}  "
                f"train-probe acc {acc:.3f}  {time.time() - t0:.0f}s",
                flush=True,
            )

    train_time = time.time() - t0
    model.eval()
    tf_acc = teacher_forced_accuracy(model, ho_ids, ho_mask, ho_lab)
    gen_acc = generate_accuracy(model, tokenizer, heldout_pairs)
    print(f"held-out accuracy: teacher-forced {tf_acc:.4f}, greedy generate {gen_acc:.4f}")
    n_sys = len(EVAL_SYSTEM_PROMPTS)
    with_system = [
        [{"role": "system", "content": EVAL_SYSTEM_PROMPTS[i % n_sys]}]
        for i in range(len(heldout_pairs))
    ]
    sys_acc = teacher_forced_accuracy(
        model, *encode_examples(tokenizer, heldout_pairs, with_system)
    )
    print(f"held-out accuracy after a system message: {sys_acc:.4f}")
    earlier = [
        [
            {"role": "user", "content": f"What is {c}+{d}?"},
            {"role": "assistant", "content": str(c + d)},
        ]
        for c, d in random.Random(args.seed + 3).choices(train_pairs, k=len(heldout_pairs))
    ]
    turn_acc = teacher_forced_accuracy(model, *encode_examples(tokenizer, heldout_pairs, earlier))
    print(f"held-out accuracy after an earlier question and answer: {turn_acc:.4f}")

    args.out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=16,
    )
    model.save_pretrained(args.out)
    tokenizer.backend_tokenizer.no_padding()  # do not persist padding state from evaluation
    tokenizer.backend_tokenizer.no_truncation()
    tokenizer.save_pretrained(args.out)
    make_portable(args.out)
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(
        f"saved to {args.out} ({size:,} bytes); total time {time.time() - t0:.0f}s "
        f"(training {train_time:.0f}s)"
    )


if __name__ == "__main__":
    main()
