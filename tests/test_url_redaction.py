"""No secrets in the data (issue #23.7): credentials and signed-URL parameters never reach a file of
the output, a log line or an audit message; the download itself still uses the whole URL."""
from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from demo.image_server import generated_photos
from sources.download import Downloader, DownloadOptions, FetchError
from uvd.url_redact import MASK, redact_text, redact_url, secrets_in
from tests.support.header_server import HeaderServer
from tests.support.laion import FAST_DOWNLOAD, write_metadata
from uvd.config import BuildConfig
from uvd.runner import build


@pytest.mark.parametrize("url, written", [
    ("https://alice:s3cret@example.org/a.jpg", "https://example.org/a.jpg"),
    ("https://tok3n@example.org/a.jpg", "https://example.org/a.jpg"),  # a bare user part is often a token
    ("https://u:p%40ss@w@example.org:8443/a.jpg?x=1", "https://example.org:8443/a.jpg?x=1"),
    ("https://b.s3.amazonaws.com/k/a.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2026&"
     "X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=abc123",
     "https://b.s3.amazonaws.com/k/a.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&"
     "X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=REDACTED"),
    ("https://storage.googleapis.com/b/a.jpg?x-goog-signature=ff00&X-Goog-Credential=sa%40p.iam&w=2",
     "https://storage.googleapis.com/b/a.jpg?x-goog-signature=REDACTED&X-Goog-Credential=REDACTED&w=2"),
    ("https://acct.blob.core.windows.net/c/a.jpg?sv=2024&se=2026&sp=r&sig=Zm9v%3D",
     "https://acct.blob.core.windows.net/c/a.jpg?sv=2024&se=2026&sp=r&sig=REDACTED"),
    ("https://cdn.example/a.jpg?Expires=1&Signature=xyz&Key-Pair-Id=K1",
     "https://cdn.example/a.jpg?Expires=1&Signature=REDACTED&Key-Pair-Id=K1"),
    ("https://x.example/a.jpg?size=l#access_token=frag", "https://x.example/a.jpg?size=l#access_token=REDACTED"),
    ("https://x.example/a;token=keep/b.jpg?w=1", "https://x.example/a;token=keep/b.jpg?w=1"),  # the path is not a query
    ("https://x.example/my photo.jpg?q=a b&token=", "https://x.example/my photo.jpg?q=a b&token="),  # nothing to hide
    ("https://x.example/a.jpg?tokens=1&mytoken=2", "https://x.example/a.jpg?tokens=1&mytoken=2"),  # whole names only
    ("https://x.example/a.jpg", "https://x.example/a.jpg"),
])
def test_written_form_drops_credentials_and_masks_secret_parameters_only(url, written):
    assert redact_url(url) == written


def test_the_parameter_list_is_configurable():
    url = "https://x.example/a.jpg?session=abc&token=def"
    assert redact_url(url, ["session"]) == "https://x.example/a.jpg?session=REDACTED&token=def"
    assert redact_url(url, []) == url


def test_free_text_is_scrubbed_of_every_url_secret():
    url = "http://bob:hunter2pass@h.example/a.jpg?sig=signature999"
    text = f"redirect: more than 5 redirects (last: {url}); quoted part '/a.jpg?sig=signature999' and hunter2pass"
    clean = redact_text(text, secrets=secrets_in(url))
    assert "hunter2pass" not in clean and "signature999" not in clean and "bob:" not in clean
    assert "h.example/a.jpg?sig=" + MASK in clean


def _secret_routes(photo: bytes, other: bytes) -> dict[str, tuple]:
    return {
        "/img/a.jpg?X-Amz-Credential=AKIDSECRETCRED%2F2026&X-Amz-Signature=amzsig0123456789&size=big": (photo, []),
        "/img/b.jpg?token=tokvalueABCDEF&w=1": (other, []),
        "/loop?X-Goog-Signature=googsigsecret42": (b"", [("Location", "/loop?X-Goog-Signature=googsigsecret42")], 302),
    }


def test_the_download_uses_the_whole_url_and_sends_credentials_to_their_origin_only():
    photo = generated_photos(1, seed=3, sizes=(64, 64))[0]
    with HeaderServer({"/x.jpg": (photo, [])}) as other:
        routes = {**_secret_routes(photo, photo), "/to-other": (b"", [("Location", other.url("/x.jpg"))], 302)}
        with HeaderServer(routes) as srv:
            ports = [s.httpd.server_address[1] for s in (srv, other)]
            signed = next(iter(routes))  # the server answers only the exact path and query
            opts = {**FAST_DOWNLOAD, "allow_loopback": [f"127.0.0.1:{p}" for p in ports]}
            with Downloader(DownloadOptions(**opts)) as dl:
                assert dl.fetch(f"http://alice:hunter2pass@127.0.0.1:{ports[0]}{signed}").data == photo
                assert dl.fetch(f"http://alice:hunter2pass@127.0.0.1:{ports[0]}/to-other").data == photo
                with pytest.raises(FetchError) as err:
                    dl.fetch(f"http://carol:loopsecretpw@127.0.0.1:{ports[0]}/loop?X-Goog-Signature=googsigsecret42")
    for path in (signed, "/to-other"):
        assert base64.b64decode(srv.request_headers[path]["Authorization"].split()[1]) == b"alice:hunter2pass"
    assert "Authorization" not in other.request_headers["/x.jpg"]  # not forwarded to another origin
    message = str(err.value)
    assert err.value.kind == "redirect" and "/loop?X-Goog-Signature=REDACTED" in message
    assert "googsigsecret42" not in message and "loopsecretpw" not in message and "carol" not in message


SECRETS = ["hunter2pass", "AKIDSECRETCRED", "amzsig0123456789", "tokvalueABCDEF", "googsigsecret42", "loopsecretpw",
           "bobs404secret", "fragsecret999", "blockedpw777"]


def _all_text(path: Path) -> bytes:
    """A file's bytes, and for Parquet (whose pages are compressed) also its decoded rows and metadata."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        f = pq.ParquetFile(path)
        data += repr(f.metadata.metadata).encode() + repr(f.read().to_pylist()).encode()
    return data


def test_a_build_with_secret_urls_writes_no_secret_anywhere(tmp_path, caplog):
    photos = generated_photos(2, seed=9, sizes=(200, 260))
    with HeaderServer(_secret_routes(*photos)) as srv:
        port = srv.httpd.server_address[1]
        base = f"127.0.0.1:{port}"
        urls = [
            f"http://alice:hunter2pass@{base}/img/a.jpg?X-Amz-Credential=AKIDSECRETCRED%2F2026"
            "&X-Amz-Signature=amzsig0123456789&size=big",
            f"http://{base}/img/b.jpg?token=tokvalueABCDEF&w=1#access_token=fragsecret999",
            f"http://bob:bobs404secret@{base}/status/404?sig=bobs404secret",
            f"http://carol:loopsecretpw@{base}/loop?X-Goog-Signature=googsigsecret42",
            "http://dave:blockedpw777@10.0.0.1/x.jpg?signature=blockedpw777",
        ]
        meta = write_metadata(tmp_path / "meta.parquet", {"url": urls})
        cfg = BuildConfig.model_validate({"out": str(tmp_path / "out"), "datasets": [{
            "name": "web", "source": "laion", "builder": "single", "items_per_unit": 8,
            "source_args": {"metadata": str(meta), "download": {**FAST_DOWNLOAD, "allow_loopback": [base]}}}]})
        with caplog.at_level(logging.DEBUG):
            summary = build(cfg, use_ray=False)
    assert summary.succeeded and summary.inputs == 5 and summary.ok == 2
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name.endswith(".parquet") and "sentences" in p.parts for p in files)
    for p in files:
        text = _all_text(p)
        for secret in SECRETS:
            assert secret.encode() not in text, (secret, p)
    logged = caplog.text + json.dumps(summary.__dict__, default=str)
    assert not [s for s in SECRETS if s in logged]
    rows = [json.loads(r["meta"]) for p in files if "sentences" in p.parts and p.suffix == ".parquet"
            for r in pq.read_table(p).to_pylist()]
    assert sorted(r["url"] for r in rows) == [  # the provenance is kept, only its secrets are masked
        f"http://{base}/img/a.jpg?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&size=big",
        f"http://{base}/img/b.jpg?token=REDACTED&w=1#access_token=REDACTED",
    ]


def test_config_dump_for_the_manifest_keeps_no_secret():
    from uvd.url_redact import redact_strings

    cfg = {"out": "s3://bucket/out", "datasets": [{"source_args": {
        "metadata": ["https://alice:pw1234@host/meta.parquet?X-Amz-Signature=abcd1234&part=1", "local/file.csv"],
        "retries": 3}}]}
    dumped = repr(redact_strings(cfg))
    assert "pw1234" not in dumped and "abcd1234" not in dumped
    assert "https://host/meta.parquet?X-Amz-Signature=REDACTED&part=1" in dumped and "local/file.csv" in dumped
    assert redact_strings(cfg)["datasets"][0]["source_args"]["retries"] == 3
