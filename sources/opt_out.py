"""Opt-out by response header: a site that says `noai` (or the like) for an image is not used.

Two signals, both honoured by default:

- `X-Robots-Tag`, as img2dataset (`downloader.is_disallowed`) and Google read it: every
  header counts (a response may carry several, and a proxy may merge them into one value
  joined by commas). A value is a comma list of directives; `<user-agent>: <directives>`
  starts a group that lasts until the next user agent, so `googlebot: noindex, uvd: noai`
  is two groups. Directives that take a value (`max-image-preview:large`,
  `max-snippet:-1`, `unavailable_after: 25 Jun 2010 15:00:00 PST`) are directives, not user
  agents. A directive outside any group, or in a group for `*` or one of our tokens (`uvd`,
  `img2dataset` by default), that is in `directives` refuses the image.
- W3C TDMRep's `tdm-reservation: 1`: the rights holder reserves text-and-data mining.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Iterator

from pydantic import Field

from uvd.config import Strict

DEFAULT_DIRECTIVES = ["noai", "noimageai", "noindex", "noimageindex", "noml"]
# Google's and Bing's directives written `name: value`; anything else before a colon is a user agent.
VALUED_DIRECTIVES = frozenset({"max-snippet", "max-image-preview", "max-video-preview", "unavailable_after",
                               "unavailable-after"})
# A user agent is one product token; "25-Jun-2010 15" (the rest of a date cut at its comma) is not.
USER_AGENT = re.compile(r"^[A-Za-z0-9_.*-]+$")


class OptOutOptions(Strict):
    enabled: bool = True  # honour opt-outs at all; turn off only where you have the right to use the images anyway
    directives: list[str] = Field(default_factory=lambda: list(DEFAULT_DIRECTIVES))
    user_agent_tokens: list[str] = Field(default_factory=lambda: ["uvd", "img2dataset"])
    tdm_reservation: bool = True  # W3C TDMRep: `tdm-reservation: 1` refuses the image


def directives_by_agent(value: str) -> Iterator[tuple[str | None, str]]:
    """(user agent or None for all, directive name) for each directive of one X-Robots-Tag value."""
    agent: str | None = None
    for piece in value.split(","):
        piece = piece.strip()
        while piece:
            name, sep, rest = piece.partition(":")
            name = name.strip().lower()
            if not sep or name in VALUED_DIRECTIVES:
                if USER_AGENT.match(name):
                    yield agent, name
                break
            if not USER_AGENT.match(name):
                break  # not a directive nor an agent: a date's tail after its comma, or garbage
            agent, piece = name, rest.strip()  # "<agent>: <first directive of its group>"


def disallowing_directive(values: Iterable[str], options: OptOutOptions) -> str | None:
    """The first X-Robots-Tag value (one per header) that refuses use by us, or None."""
    if not options.enabled:
        return None
    wanted = {d.strip().lower() for d in options.directives}
    tokens = {"*"} | {t.strip().lower() for t in options.user_agent_tokens}
    for value in values:
        if any(d in wanted and (agent is None or agent in tokens) for agent, d in directives_by_agent(value)):
            return value.strip()
    return None


def opt_out_reason(get_all: Callable[[str], list[str] | None], options: OptOutOptions) -> str | None:
    """Why a response's headers refuse the image ("X-Robots-Tag: noai", "tdm-reservation: 1"), or None.
    `get_all(name)`: every value of a header, as `http.client`'s `headers.get_all`."""
    if not options.enabled:
        return None
    refused = disallowing_directive(get_all("x-robots-tag") or [], options)
    if refused:
        return f"X-Robots-Tag: {refused}"
    if options.tdm_reservation and any(v.strip() == "1" for v in get_all("tdm-reservation") or []):
        return "tdm-reservation: 1"
    return None
