from gauge.evaluation.redact import MASK, Redactor, is_secret_name


def test_names() -> None:
    assert all(
        map(
            is_secret_name,
            [
                "api_key",
                "Authorization",
                "X-Auth-Token",
                "password",
                "apikey",
                "hf_token",
                "x-api-key",
            ],
        )
    )
    assert not any(
        map(
            is_secret_name,
            ["temperature", "model", "seed", "max_tokens", "total_tokens", "keyword"],
        )
    )


def test_collect_masks_by_name_and_learns_values() -> None:
    r = Redactor()
    cleaned = r.collect(
        {
            "api_key": "sk-canary-123456",
            "extra_headers": {"Authorization": "Bearer tok-canary-999"},
            "temperature": 0.5,
        }
    )
    assert cleaned == {
        "api_key": MASK,
        "extra_headers": {"Authorization": MASK},
        "temperature": 0.5,
    }
    line = b'{"echo": "sk-canary-123456 and tok-canary-999"}'
    assert r.line(line) == b'{"echo": "******** and ********"}'


def test_env_secrets_and_url_credentials(monkeypatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "env-canary-abcdef")
    r = Redactor.from_environ()
    out = r.text("key env-canary-abcdef at https://user:pa55word@host.example/v1 ok")
    assert out == "key ******** at https://********@host.example/v1 ok"


def test_short_values_are_not_replaced() -> None:
    r = Redactor(["abc"])
    assert r.text("abc abc") == "abc abc"
