"""The eval layer: tasks, datasets, solvers, scorers, metrics, the runner and its journal.

Named `evaluation`, not `eval`, so importing it cannot shadow the exported
`gauge.eval` function (a subpackage import rebinds the parent's attribute).

task.py      Task, @task, loading `path.py@name` with -T arguments
dataset.py   Sample, json/csv/hf datasets, field mapping, shuffle/limit
state.py     TaskState (one sample in flight), helper models
solver.py    generate, system_message, prompt_template, chain_of_thought, ...
scorer.py    match, includes, exact, pattern, choice, f1, model-graded scorers
metrics.py   accuracy, mean, stderr; epoch reducers
runner.py    eval / eval_async: workers, epochs, max_errors, several models
sample.py    solve, score and journal one sample; per-sample retries, cache, usage
journal.py   the JSONL journal (write, read); resume.py rebuilds a run from it
redact.py    keeps secrets out of every journal line
progress.py  live progress; results.py metrics and table
rows.py      journals as rows (gauge.log.read_log); report.py the HTML report
"""
