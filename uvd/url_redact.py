"""URLs as they may be written down: without credentials, with signed-URL secrets masked.

A URL is an item's provenance, so it is kept in the shards and the audit — but a metadata
row may carry `user:pass@` or a pre-signed link (S3, GCS, Azure SAS, CloudFront, OAuth
tokens), and whatever is written into the data is copied to every reader of it. Only the
written form is redacted; the download itself uses the URL as given.

`redact_url` keeps the URL byte for byte except the userinfo (removed) and the values of
the listed query/fragment parameters (replaced by `REDACTED`). `redact_text` does the same
to every URL inside free text (error messages), and can also mask literal secret values
taken from a URL (`secrets_in`), for messages that quote a part of it in another form.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable
from urllib.parse import unquote_plus, urlsplit

MASK = "REDACTED"
# Names compared case-insensitively. Signatures and credentials of signed URLs, bearer
# tokens, API keys and passwords; not expiry or key ids, which are not secret and help
# explain a 403.
DEFAULT_SECRET_PARAMS = [
    "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token",  # S3 SigV4
    "AWSAccessKeyId", "Signature",  # S3 SigV2, CloudFront
    "X-Goog-Signature", "X-Goog-Credential", "GoogleAccessId",  # GCS V4 / V2
    "sig", "signature",  # Azure SAS and many CDNs
    "token", "access_token", "refresh_token", "id_token", "auth", "authorization",
    "api_key", "apikey", "key_secret", "client_secret", "password", "passwd", "pwd",
]
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@")
_PARAM = re.compile(r"([?&;#])([^=&;#\s]+)=([^&;#\s'\"]*)")


def _names(params: Iterable[str]) -> frozenset[str]:
    return frozenset(p.strip().lower() for p in params)


def _mask_params(text: str, names: frozenset[str]) -> str:
    def one(m: re.Match[str]) -> str:
        if unquote_plus(m.group(2)).strip().lower() in names and m.group(3):
            return f"{m.group(1)}{m.group(2)}={MASK}"
        return m.group(0)
    return _PARAM.sub(one, text)


def redact_url(url: str, params: Iterable[str] = DEFAULT_SECRET_PARAMS) -> str:
    """url without `user:pass@` and with the values of `params` (query or fragment) masked."""
    url = _USERINFO.sub(r"\1", url, count=1)
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=-1)
    if cut < 0:
        return url
    return url[:cut] + _mask_params(url[cut:], _names(params))


def secrets_in(url: str, params: Iterable[str] = DEFAULT_SECRET_PARAMS) -> list[str]:
    """The secret strings of a URL (userinfo, values of `params`), raw and decoded, longest first."""
    found: set[str] = set()
    m = _USERINFO.match(url)
    if m:
        info = url[m.end(1):m.end() - 1]
        found |= {info, unquote_plus(info)} | {p for p in info.split(":") + unquote_plus(info).split(":")}
    names = _names(params)
    try:
        parts = urlsplit(url)
        tail = "?" + parts.query + "#" + parts.fragment
    except ValueError:
        tail = url
    for pm in _PARAM.finditer(tail):
        if unquote_plus(pm.group(2)).strip().lower() in names:
            found |= {pm.group(3), unquote_plus(pm.group(3))}
    # Very short values would mask unrelated text; they are caught in their key=value form anyway.
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def redact_text(text: str, params: Iterable[str] = DEFAULT_SECRET_PARAMS, secrets: Iterable[str] = ()) -> str:
    """Free text with every URL's credentials removed, listed parameters masked, and `secrets` masked."""
    text = _mask_params(_USERINFO.sub(r"\1", text), _names(params))
    for s in secrets:
        text = text.replace(s, MASK)
    return text


def url_digest(url: str) -> str:
    """What an index stores to compare URLs by: equal exactly when the URLs are, secrets unreadable."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def redact_strings(obj: object) -> object:
    """A JSON-like value (a config dump) with every URL-looking string redacted (`redact_url`): a
    metadata path given as a signed link or with `user:pass@` is not copied into manifest.json."""
    if isinstance(obj, str):
        return redact_url(obj) if "://" in obj else obj
    if isinstance(obj, dict):
        return {k: redact_strings(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_strings(v) for v in obj]
    return obj
