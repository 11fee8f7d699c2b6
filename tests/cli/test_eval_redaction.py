"""Canary secrets in every channel must never reach the journal (or the report)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from gauge.cli.main import main
from gauge.model.providers.mock import MockAPI
from gauge.model.registry import modelapi, unregister

CANARIES = {
    "env": "env-canary-7d1e0f",
    "arg": "arg-canary-55ab12",
    "token": "tok-canary-99c0de",
    "header": "hdr-canary-31f4aa",
    "url": "url-canary-pw8812",
    "key_flag": "key-canary-a1b2c3",
}

TASK = """
import os
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import includes

@task
def leaky() -> Task:
    # The prompt itself carries the env secret: the echoing model repeats it.
    secret = os.environ["ACME_API_KEY"]
    return Task([Sample(input=f"say {secret}", target="say", id=1)], scorer=includes())
"""


class OpenMockAPI(MockAPI):
    """The mock, taking any model arg (as OpenAI-compatible providers do, into the body)."""

    model_args_go_to = "nowhere (a test provider)"
    # It reads these credentials itself (as hf reads `token`), so get_model keeps them as
    # model args; a credential a provider does not read is refused (credentials.py).
    model_arg_names = (MockAPI.model_arg_names or frozenset()) | {"secret_arg", "hf_token"}


@pytest.fixture
def open_mock() -> Iterator[None]:
    modelapi("openmock")(OpenMockAPI)
    yield
    unregister("openmock")


@pytest.mark.usefixtures("open_mock")
def test_canaries_never_reach_journal_or_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACME_API_KEY", CANARIES["env"])
    (tmp_path / "leaky.py").write_text(TASK)
    logs = tmp_path / "logs"
    main(
        [
            "eval",
            str(tmp_path / "leaky.py"),
            "-m",
            "openmock/echo",
            "-M",
            f"secret_arg={CANARIES['arg']}",
            "-M",
            f"hf_token={CANARIES['token']}",
            "-M",
            f"api_key={CANARIES['key_flag']}",
            "--extra-headers",
            f'{{"Authorization": "Bearer {CANARIES["header"]}", "X-Trace": "t1"}}',
            "--model-base-url",
            f"https://user:{CANARIES['url']}@proxy.example/v1",
            "--log-dir",
            str(logs),
        ]
    )
    [journal] = logs.glob("*.jsonl")
    text = journal.read_text()
    for channel, canary in CANARIES.items():
        assert canary not in text, channel
    # the settings are still recorded, only their secret values are masked
    assert '"X-Trace":"t1"' in text and '"Authorization":"********"' in text
    assert '"secret_arg":"********"' in text and '"hf_token":"********"' in text
    assert "https://********@proxy.example/v1" in text
    assert '"say ********"' in text  # the echoed env key inside the output
    out, _ = capsys.readouterr()
    assert not any(c in out for c in CANARIES.values())
    main(["view", str(journal), "-o", str(tmp_path / "r.html")])
    html = (tmp_path / "r.html").read_text()
    assert not any(c in html for c in CANARIES.values())
