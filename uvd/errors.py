"""Errors that mean "this input item is bad", as opposed to a bug or a failing machine."""


class BadInput(Exception):
    """An input item cannot be used; the message is its audit reason, "<kind>: <detail>"."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class ConfigError(ValueError):
    """A build config is wrong: unknown key, wrong type, missing path."""


def reason_of(err: Exception) -> str:
    """The audit reason for an exception raised while handling one item."""
    if isinstance(err, BadInput):
        return str(err)
    if isinstance(err, OSError):  # a file that cannot be read is that item's problem, not a bug
        return f"io: {err.strerror or err}"
    return f"error: {type(err).__name__}: {err}"
