"""Render a conversation into one prompt with a Jinja chat template (--apply_chat_template).

    ChatTemplate.load(spec, tokenizer)   spec: the template text, or a file holding it;
                                         None: the template of a local tokenizer directory
                                         (tokenizer_config.json's chat_template, or
                                         chat_template.jinja beside it)
    template.render(messages)            the prompt, with the generation prompt added

Rendering follows Hugging Face's: a sandboxed Jinja environment with
trim_blocks/lstrip_blocks, `messages`, `add_generation_prompt`, `bos_token`,
`eos_token` and `raise_exception`. No tokenizer library is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gauge.errors import ConfigError, MissingExtra, one_line


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """A Jinja chat template and the special tokens it may use."""

    source: str
    bos_token: str = ""
    eos_token: str = ""

    @classmethod
    def load(cls, spec: str | None, tokenizer: Any) -> ChatTemplate:
        """The template from `-M chat_template=` (text or file), else the tokenizer's."""
        tokens = _special_tokens(tokenizer)
        if spec:
            return cls(_template_text(spec), *tokens)
        directory = Path(tokenizer) if isinstance(tokenizer, str) else None
        if directory is None or not directory.is_dir():
            raise ConfigError(
                "--apply_chat_template needs a chat template: give -M chat_template=FILE "
                "(or the template text), or -M tokenizer=DIR with a local tokenizer that has one"
            )
        text = _directory_template(directory)
        if text is None:
            raise ConfigError(
                f"the tokenizer in {directory} has no chat template; give -M chat_template=FILE"
            )
        return cls(text, *tokens)

    def render(self, messages: list[dict[str, str]]) -> str:
        """`messages` as one prompt ending with the assistant's generation prompt."""
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ModuleNotFoundError as ex:
            raise MissingExtra("--apply_chat_template needs 'jinja2': pip install jinja2") from ex
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        try:
            return env.from_string(self.source).render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except ConfigError:
            raise
        except Exception as ex:  # a template error is the template's, in one line
            raise ConfigError(
                f"the chat template failed: {type(ex).__name__}: {one_line(ex)}"
            ) from None


def _raise(message: str) -> None:
    raise ConfigError(f"the chat template refused the conversation: {message}")


def _template_text(spec: str) -> str:
    if "{" in spec:
        return spec
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"-M chat_template={spec!r} is neither a Jinja template nor a file; give the "
            "template text or the path of a file holding it"
        )
    return path.read_text()


def _directory_template(directory: Path) -> str | None:
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = _tokenizer_config(directory)
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _special_tokens(tokenizer: Any) -> tuple[str, str]:
    if not isinstance(tokenizer, str) or not Path(tokenizer).is_dir():
        return "", ""
    config = _tokenizer_config(Path(tokenizer))
    return _token_text(config.get("bos_token")), _token_text(config.get("eos_token"))


def _tokenizer_config(directory: Path) -> dict[str, Any]:
    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as ex:
        raise ConfigError(f"cannot read {path}: {one_line(ex)}") from None
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # {"content": "<s>", ...}
        value = value.get("content")
    return value if isinstance(value, str) else ""
