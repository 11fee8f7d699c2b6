"""Credentials given as model args: found by name, never sent in a request body.

    normalise_model_args({"api-key": k})  -> {"api_key": k}   (Inspect's rule: - is _)
    names_the_key("apiKey")               -> True   (it is the provider's API key)
    is_credential_arg("password")         -> True   (a credential, not the key)
    is_credential_arg("stop_token_ids")   -> False  (a sampling parameter)
    is_secret_name(...)                   the wider rule journals mask values by
    split_credentials(reads, provider, api_key, args, key_vars)
                                          -> (api_key, the args without credentials)

OpenAI-compatible providers send model args they do not read in the request
body (`-M min_p=0.05`), so a key given as `-M api-key=...` would otherwise
travel to the server as a JSON field while authentication used the env key.
`split_credentials` runs in get_model before the provider is built:

- a name the provider reads itself (hf's `token`, passed to from_pretrained) stays;
- a name that means the API key (`api_key`, `apiKey`, `API_KEY`, `key`, `token`,
  `access_token`, `auth_token`, `bearer`, `<anything>_api_key`) becomes the key;
- any other credential-like name (`password`, `secret`, `client_secret`,
  `authorization`, `cookie`, ...) is a one-line ConfigError: we cannot tell
  where it should go, and a body field is never the right place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gauge.errors import ConfigError

_SECRET_WORDS = frozenset(
    {"auth", "authorization", "bearer", "cookie", "credential", "credentials", "passwd", "pwd"}
)
_SECRET_ENDINGS = ("key", "token", "secret", "password")
NOT_SECRET = frozenset({"prompt_cache_key"})
"""Body fields whose names look like credentials but are not (OpenAI's cache routing key)."""
KEY_NAMES = frozenset(
    {
        "api_key",
        "apikey",
        "key",
        "token",
        "api_token",
        "access_token",
        "auth_token",
        "bearer",
        "bearer_token",
    }
)
"""Canonical spellings that mean "the provider's API key"."""
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPECIAL_TOKENS = frozenset(
    {"bos", "eos", "pad", "unk", "sep", "cls", "mask", "stop", "start", "end", "special"}
)
"""`<word>_token` names a tokenizer's special token (hf's `pad_token`), not a credential."""


def canonical(name: str) -> str:
    """`name` in snake case: `apiKey`, `API-KEY` and `api key` all give `api_key`."""
    return re.sub(r"[^a-z0-9]+", "_", _CAMEL.sub("_", name.strip()).lower()).strip("_")


def is_secret_name(name: str) -> bool:
    """Whether a field, header or model arg called `name` holds a secret.

    Judged per word (`api_key`, `X-Auth-Token`, `hf_token`, `apiKey`), so counts
    such as `max_tokens` are not mistaken for secrets.
    """
    if canonical(name) in NOT_SECRET:
        return False
    words = re.split(r"[^a-z0-9]+", canonical(name))
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_ENDINGS) for w in words if w)


def is_credential_arg(name: str) -> bool:
    """Whether model arg `name` holds a credential: gauge never sends it as a body field.

    Narrower than `is_secret_name`, which journals mask by: only the last word
    counts for key / token / secret / password, so `stop_token_ids` (vLLM) and
    `prefix_token_id` stay sampling settings, and `pad_token` a special token.
    """
    form = canonical(name)
    words = [w for w in form.split("_") if w]
    if not words or form in NOT_SECRET:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    last = words[-1]
    if last.endswith("token") and len(words) > 1 and words[-2] in _SPECIAL_TOKENS:
        return False
    return last.endswith(_SECRET_ENDINGS)


def names_the_key(name: str) -> bool:
    """Whether model arg `name` means the provider's API key."""
    form = canonical(name)
    return form in KEY_NAMES or form.endswith("_api_key")


def normalise_model_args(model_args: Mapping[str, Any]) -> dict[str, Any]:
    """The model args with `-` in names read as `_` (`api-key` is `api_key`), as Inspect does.

    Two spellings of one name with different values are a one-line ConfigError.
    """
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for name, value in model_args.items():
        key = name.strip().replace("-", "_") if isinstance(name, str) else name
        if key in out and out[key] != value:
            shown = "<hidden>" if is_secret_name(key) else f"{value!r} and {out[key]!r}"
            raise ConfigError(
                f"-M {given[key]} and -M {name} are one model arg with different values "
                f"({shown}); give it once"
            )
        out[key] = value
        given[key] = name
    return out


def split_credentials(
    reads: frozenset[str],
    provider: str,
    api_key: str | None,
    model_args: Mapping[str, Any],
    key_vars: tuple[str, ...],
) -> tuple[str | None, dict[str, Any]]:
    """(api_key, model args) with every credential-like model arg taken out.

    `reads` are the model-arg names the provider reads itself;
    `key_vars` the env vars it reads its key from (named in the error).
    """
    args: dict[str, Any] = {}
    found: list[tuple[str, str]] = []
    for name, value in model_args.items():
        if not isinstance(name, str) or not is_credential_arg(name):
            args[name] = value
        elif name in reads:
            args[name] = value  # the provider reads it itself (hf's token)
        elif names_the_key(name):
            found.append((name, _text(name, value)))
        else:
            where = f" (or set {' or '.join(key_vars)})" if key_vars else ""
            raise ConfigError(
                f"-M {name} is a credential provider {provider!r} does not read, and gauge "
                f"never sends credentials in a request body; give the API key as "
                f"-M api_key={where}, or remove it"
            )
    source = "api_key="
    for name, value in found:
        if api_key is not None and value != api_key:
            raise ConfigError(
                f"-M {name} and {source} give two different API keys; give the key once"
            )
        api_key, source = value, f"-M {name}"
    return api_key, args


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list | tuple):
        raise ConfigError(f"-M {name} must be the key as text, got {type(value).__name__}")
    text = str(value.get() if hasattr(value, "get") else value).strip()
    if not text:
        raise ConfigError(f"-M {name} is empty; give the key, or leave it out to use the env key")
    return text
