"""`gauge view` at scale: 10,000 samples x 5 models, written and opened in headless Chromium.

    .venv/bin/python bench/view_bench.py [--samples 10000] [--models 5] [--repeat 3] [--words 0]

Writes synthetic journals (gauge.testing.journals: chat messages, scores with
explanations, usage and cost, errors with attempts, metadata; `--words N` puts a
passage of N random words before each question, for long prompts) into a
temporary folder, then measures, best of `--repeat`:

  write_s          `gauge view FOLDER -o page.html` in this process: read every
                   journal, build the page, write it (wall time)
  html_mb          the page's size
  interactive_s    navigation to the overview drawn and its script ready in
                   headless Chromium (`chromium`, 1400x1000)
  samples_s        click on "Samples" until all samples are decoded, filtered and
                   the table drawn (the first time: every run's rows chunk decoded)
  search_s         typing a search that matches ~1 in 10 until the count shows it
                   (includes the page's 150 ms typing debounce)
  transcript_s     click on a row until its transcript is shown (its chunk decoded)
  errors           console errors and exceptions in the page (must be 0)

Needs Debian's chromium (apt-get install -y chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from gauge.cli.main import main as gauge_main
from gauge.testing.browser import Browser
from gauge.testing.journals import write_runs

COUNT = "((document.querySelector('#samples .count') || {}).textContent || '')"


def write_page(logs: Path, out: Path) -> float:
    started = time.perf_counter()
    try:
        gauge_main(["view", str(logs), "-o", str(out)])
    except SystemExit as ex:
        if ex.code:
            raise
    return time.perf_counter() - started


async def open_page(page: Path, profile: Path, total: int) -> dict[str, float | int]:
    async with await Browser.launch(profile, 1400, 1000) as browser:
        await browser.goto("about:blank")
        started = time.perf_counter()
        await browser.send("Page.navigate", {"url": page.as_uri()})
        await browser.wait_for("document.body && document.body.dataset.ready === '1'", 120)
        interactive = time.perf_counter() - started

        started = time.perf_counter()
        await browser.eval("document.querySelector('nav button[data-tab=samples]').click()")
        want = f"{total:,} of {total:,} samples"
        await browser.wait_for(f"{COUNT} === {json.dumps(want)}", 120)
        samples = time.perf_counter() - started

        started = time.perf_counter()
        await browser.eval(
            "(() => { const el = document.querySelector('#samples [data-f=q]');"
            " el.value = '+ 1'; el.dispatchEvent(new Event('input', {bubbles: true})); })()"
        )
        await browser.wait_for(f"{COUNT} !== {json.dumps(want)}", 120)
        search = time.perf_counter() - started

        started = time.perf_counter()
        await browser.eval("document.querySelector('#stable .vr').click()")
        await browser.wait_for("!document.getElementById('drawer').hidden", 60)
        transcript = time.perf_counter() - started
        return {
            "interactive_s": interactive,
            "samples_s": samples,
            "search_s": search,
            "transcript_s": transcript,
            "errors": len(browser.errors),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--words", type=int, default=0, help="a passage of N random words in each prompt"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = [f"provider-{i}/model-{i}-instruct" for i in range(args.models)]
        write_runs(root / "logs", models, args.samples, words=args.words)
        best: dict[str, float] = {}
        errors = 0
        for round_ in range(args.repeat):
            page = root / "page.html"
            write_s = write_page(root / "logs", page)
            profile = root / f"profile-{round_}"
            profile.mkdir()
            opened = asyncio.run(open_page(page, profile, args.samples * args.models))
            errors += int(opened.pop("errors"))
            for name, value in {"write_s": write_s, **opened}.items():
                best[name] = min(best.get(name, float("inf")), float(value))
        size = page.stat().st_size / 1e6
    print(
        f"{args.samples:,} samples x {args.models} models, {args.words} passage words, "
        f"best of {args.repeat}:"
    )
    print(f"  html_mb        {size:8.1f}")
    for name, value in best.items():
        print(f"  {name:14} {value:8.2f}")
    print(f"  errors         {errors:8d}")


if __name__ == "__main__":
    main()
