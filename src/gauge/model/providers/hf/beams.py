"""Beam search (vLLM's `use_beam_search`) with transformers' own `generate`.

A beam request cannot share a batch with sampled rows (generate's beams are
one search over the whole batch), so each runs as its own `generate` call:
`num_beams` is the beam width (best_of, else n), `num_return_sequences` is n,
and `length_penalty` and `early_stopping` (True, False or "never") are
transformers' parameters of the same names and meaning. The n best finished
beams come back best first. Stop sequences cut each beam's text afterwards (as
for other requests); stop token ids end a beam like EOS. `ignore_eos` is refused
with beam search by the server (transformers' beam search needs an end token).
"""

from __future__ import annotations

from itertools import groupby
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gauge.model.providers.hf.generation import Generator, _Row


def beam_groups(rows: list[_Row]) -> list[list[_Row]]:
    """The rows of each beam-search request, one list per request (rows sorted by request)."""
    beams = [row for row in rows if row.sampling.beams]
    return [list(group) for _, group in groupby(beams, key=lambda row: row.request)]


def search_beams(generator: Generator, rows: list[_Row]) -> None:
    """Run one request's beam search and set each row's tokens and stop reason."""
    import torch
    import transformers

    GenerationConfig: Any = transformers.GenerationConfig
    loaded = generator.loaded
    s = rows[0].sampling
    ends = set(generator.eos_ids) | set(s.stop_token_ids)
    config = GenerationConfig(
        do_sample=False,
        num_beams=s.beams,
        num_return_sequences=len(rows),
        length_penalty=s.length_penalty,
        early_stopping=s.early_stopping,
        temperature=1.0,
        top_p=1.0,
        top_k=50,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        max_new_tokens=rows[0].cap,
        eos_token_id=sorted(ends) or None,
        pad_token_id=loaded.tokenizer.pad_token_id,
        bos_token_id=getattr(loaded.model.generation_config, "bos_token_id", None),
    )
    prompt = rows[0].prompt
    input_ids = torch.tensor([prompt], dtype=torch.long, device=loaded.device)
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
        )
    for row, sequence in zip(rows, output[:, len(prompt) :].tolist(), strict=True):
        row.tokens, row.reason = _until_end(sequence, ends, row.cap), row.cap_reason
        if row.tokens and row.tokens[-1] in ends:
            row.reason = "stop"


def _until_end(sequence: list[int], ends: set[int], cap: int) -> list[int]:
    """A beam's tokens up to and including its first end token (the rest is padding)."""
    for i, token in enumerate(sequence[:cap]):
        if token in ends:
            return sequence[: i + 1]
    return sequence[:cap]
