"""Opt-out by `X-Robots-Tag`: a site that says `noai` (or the like) for an image is not used.

The rule follows img2dataset's (`downloader.is_disallowed`), which LAION users know: every
`X-Robots-Tag` header counts (a response may carry several); a value is a comma list of
directives, optionally scoped to one crawler as `<token>: <directives>`. An unscoped value,
one scoped to `*`, or one scoped to any of our tokens (`uvd`, `img2dataset` by default) that
names a disallowed directive refuses the image.
"""
from __future__ import annotations

from typing import Iterable

from pydantic import Field

from uvd.config import Strict

DEFAULT_DIRECTIVES = ["noai", "noimageai", "noindex", "noimageindex"]


class OptOutOptions(Strict):
    enabled: bool = True  # honour X-Robots-Tag; turn off only where you have the right to use the images anyway
    directives: list[str] = Field(default_factory=lambda: list(DEFAULT_DIRECTIVES))
    user_agent_tokens: list[str] = Field(default_factory=lambda: ["uvd", "img2dataset"])


def disallowing_directive(values: Iterable[str], options: OptOutOptions) -> str | None:
    """The first X-Robots-Tag value (one per header) that refuses use by us, or None."""
    if not options.enabled:
        return None
    wanted = {d.strip().lower() for d in options.directives}
    tokens = {"*"} | {t.strip().lower() for t in options.user_agent_tokens}
    for value in values:
        scope, sep, rest = value.partition(":")
        # A scope is one token before the colon; "noindex, unavailable_after: <date>" has none.
        scoped = bool(sep) and "," not in scope
        if scoped and scope.strip().lower() not in tokens:
            continue
        if any(d.strip().lower() in wanted for d in (rest if scoped else value).split(",")):
            return value.strip()
    return None
