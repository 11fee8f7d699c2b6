"""The science questions of multiple_choice.py, scored by loglikelihood (lm-eval style).

Nothing is generated: every choice is scored as a continuation of the prompt and
the most likely one is the answer (acc), or the most likely per character (acc_norm).
Needs a provider that can score: hf/ in process, or an OpenAI-compatible
completions endpoint that returns prompt logprobs (vLLM, `gauge serve`):

    gauge eval examples/multiple_choice_loglikelihood.py --model hf/gauge-tiny
    gauge eval examples/multiple_choice_loglikelihood.py \\
        --model openai-api-completions/vllm/Qwen/Qwen2.5-0.5B -M base_url=http://127.0.0.1:8000/v1
"""

from pathlib import Path

from gauge import Task, task
from gauge.dataset import json_dataset
from gauge.scorer import acc, acc_norm
from gauge.solver import multiple_choice_loglikelihood

DATA = Path(__file__).parent / "data" / "science_mc.jsonl"


@task
def science_mc_loglikelihood() -> Task:
    """Everyday science questions with four options each, scored by loglikelihood."""
    return Task(
        dataset=json_dataset(DATA),
        solver=multiple_choice_loglikelihood("Question: {question}\nAnswer:"),
        scorer=[acc(), acc_norm()],
    )
