"""gauge as the model layer of other evaluation frameworks.

inspect_provider.py  an Inspect AI model provider: `inspect eval task.py --model gauge/<model>`
                     (registered through Inspect's `inspect_ai` entry point)
lm_eval_model.py     an lm-evaluation-harness model: `lm_eval --model gauge --model_args model=...`

Each module imports its framework, which is an extra (`gauge[inspect]`, `gauge[lm-eval]`);
docs/integrations.md says what maps to what.
"""
