"""Errors raised by gauge.

Every error a user can cause is a `GaugeError` with a one-line message that says
what to do; the CLI prints it as ``error: <message>`` and exits with `exit_code`.

    GaugeError
    ├── ConfigError            bad configuration value, flag or config file
    │   ├── UnsupportedConfig  a result-changing field the provider does not honour
    │   └── UnsupportedFeature an operation (e.g. loglikelihood) the provider cannot do
    ├── ModelNameError         malformed ``provider/model`` string
    ├── UnknownProvider        no provider registered under that name
    ├── MissingExtra           the provider's optional dependency is not installed
    ├── MissingAPIKey          no API key in the argument or the environment
    ├── ModelError             a model call failed in a way gauge detected
    └── ModelTimeout           a call ran past `timeout` or `attempt_timeout`
                               (also a TimeoutError)

Provider failures are not wrapped: the provider's own typed exception reaches
the caller, with the attempt history attached (see gauge.model.retry).
"""

from __future__ import annotations


class GaugeError(Exception):
    """Base class of gauge's user-facing errors (one line, says what to do)."""

    exit_code: int = 1


class ConfigError(GaugeError, ValueError):
    """A configuration value, flag or config file is invalid."""

    exit_code = 2


class UnsupportedConfig(ConfigError):
    """A result-changing GenerateConfig field is set that the provider does not honour."""


class UnsupportedFeature(ConfigError):
    """The provider cannot do the requested operation (e.g. loglikelihood scoring)."""


class ModelNameError(GaugeError, ValueError):
    """A model name is not of the form ``provider/model``."""

    exit_code = 2


class UnknownProvider(GaugeError, ValueError):
    """No provider is registered under the requested name."""

    exit_code = 2


class MissingExtra(GaugeError, ImportError):
    """A provider's optional dependency is not installed."""

    exit_code = 2


class MissingAPIKey(GaugeError):
    """No API key was given and none is set in the environment."""

    exit_code = 2


class ModelError(GaugeError):
    """A model call failed in a way gauge itself detected (not a provider exception)."""


class ModelTimeout(GaugeError, TimeoutError):
    """A model call ran past its `timeout` (all attempts) or `attempt_timeout` (one)."""


def one_line(ex: BaseException) -> str:
    """`ex` as a single line (pydantic validation errors become `field: message; ...`)."""
    errors = getattr(ex, "errors", None)
    if callable(errors) and type(ex).__name__ == "ValidationError":
        try:
            return "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
                for err in errors()
            )
        except Exception:  # fall back to the plain text
            pass
    return " ".join(str(ex).split()) or type(ex).__name__
