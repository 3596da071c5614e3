"""The `laion` source against a loopback server with the web's failure cases, and the real LAION sample."""
from __future__ import annotations

import contextlib
import socket
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sources.download import Downloader, DownloadOptions, FetchError
from sources.laion_metadata import url_id
from demo.image_server import PRIVATE_URL, ImageServer, bad_cases, generated_photos
from demo.laion import laion_inputs
from tests.support.laion import FAST_DOWNLOAD, audit_rows, config, run_all_units, sentences, write_metadata
from uvd import codec
from uvd.config import BuildConfig

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="module")
def server():
    photos = generated_photos(12, seed=1, sizes=(280, 520))
    with ImageServer({f"{i:02d}.jpg": p for i, p in enumerate(photos)}, stall_s=5.0) as srv:
        yield srv


def test_bad_urls_end_in_the_audit_with_their_reason_and_the_rest_become_sentences(server, tmp_path):
    good = [server.url(f"/img/{i:02d}.jpg") for i in range(10)]
    good += [server.url("/flaky/10.jpg"), server.url("/to/11.jpg")]  # 500 then 200; one redirect
    bad = bad_cases(server)
    urls = good + list(bad.values())
    captions = [f"secret caption {i}" for i in range(len(urls))]
    meta = write_metadata(tmp_path / "meta.parquet", {"URL": urls, "TEXT": captions}, row_group_size=7)
    cfg = config(tmp_path / "out", "laion", {"metadata": str(meta), "download": FAST_DOWNLOAD})

    stats = run_all_units(cfg)
    rows = audit_rows(cfg, len(stats))
    assert len(rows) == len(urls)  # one audit row per metadata row
    by_id = {r["item_id"]: r for r in rows}
    for url in good:
        assert by_id[url_id(url)]["status"] == "ok", by_id[url_id(url)]["error"]
    for name, url in bad.items():
        row = by_id[url_id(url)]
        assert row["status"] == "failed"
        assert row["reason"] == name.split("-")[0], (name, row["error"])
    assert "after 3 attempts" in by_id[url_id(bad["truncated-body"])]["error"]  # retryable: retried, then given up
    assert "Not Found" in by_id[url_id(bad["http-404"])]["error"]
    assert server.hits["/flaky/10.jpg"] == 2  # the 500 was retried once, and that sufficed
    assert server.hits["/status/404"] == 1  # a 404 is not retried

    shards = sentences(cfg, len(stats))
    assert len(shards) == len(good)
    assert all(r["num_images"] == 1 and r["layout"] == "single" for r in shards)
    assert codec.decode(shards[0]["images"][0]).shape == (256, 256, 3)
    assert not any("secret caption" in r["meta"] for r in shards)  # text never reaches a shard
    assert sum(s["inputs"] for s in stats) == sum(s["ok"] + s["failed"] for s in stats) == len(urls)


def test_same_config_and_inputs_give_byte_identical_shards(server, tmp_path):
    urls = [server.url(f"/img/{i:02d}.jpg") for i in range(6)]
    meta = write_metadata(tmp_path / "meta.parquet", {"url": urls})
    shas = []
    for run in ("a", "b"):
        cfg = config(tmp_path / run, "laion", {"metadata": str(meta), "download": FAST_DOWNLOAD}, items_per_unit=4)
        shas.append([(s["shard"]["sha256"], s["audit"]["sha256"]) for s in run_all_units(cfg)])
    assert len(shas[0]) == 2 and shas[0] == shas[1]


def test_retryable_status_is_retried_with_a_budget(server):
    with Downloader(DownloadOptions(**FAST_DOWNLOAD)) as dl:
        with pytest.raises(FetchError) as err:
            dl.fetch(server.url("/status/503"))
    assert str(err.value).startswith("http: 503") and "after 3 attempts" in str(err.value)
    assert server.hits["/status/503"] == 3


def test_private_and_loopback_addresses_are_refused_before_any_connection(server, monkeypatch):
    contacted: list[str] = []
    real = socket.create_connection

    def spy(address, *args, **kwargs):  # every TCP connection the downloader opens goes through here
        contacted.append(address[0])
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    with Downloader(DownloadOptions(**FAST_DOWNLOAD)) as dl:
        for url in (PRIVATE_URL, "http://169.254.169.254/latest/meta-data", "http://[::ffff:10.1.2.3]/a.jpg",
                    "https://192.168.1.1/x.png", server.url("/to-private")):
            with pytest.raises(FetchError) as err:
                dl.fetch(url)
            assert err.value.kind == "blocked", (url, str(err.value))
    assert all(a == "127.0.0.1" for a in contacted)  # only the loopback redirector, never a private host
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "allow_loopback": False})) as dl:
        with pytest.raises(FetchError) as err:
            dl.fetch(server.url("/img/00.jpg"))
    assert err.value.kind == "blocked" and "loopback" in str(err.value)
    assert contacted.count("127.0.0.1") == 1  # the second client did not connect either


def test_non_http_urls_are_refused():
    with Downloader(DownloadOptions()) as dl:
        for url in ("file:///etc/passwd", "ftp://example.org/a.jpg", "data:image/png;base64,AAAA", "no-scheme.jpg"):
            with pytest.raises(FetchError) as err:
                dl.fetch(url)
            assert err.value.kind == "url"


def test_real_laion_sample_fails_every_row_fast_with_a_reason(tmp_path):
    """1000 real URLs, no route to the internet here: every row ends failed with why, units finish."""
    meta = SAMPLES / "laion" / "test_1000.parquet"
    dl = {"dns_timeout_s": 0.5, "connect_timeout_s": 1.0, "read_timeout_s": 1.0, "concurrency": 64, "retries": 1,
          "backoff_s": 0.05}
    cfg = config(tmp_path / "out", "laion", {"metadata": str(meta), "download": dl}, items_per_unit=500)
    stats = run_all_units(cfg)
    assert len(stats) == 2
    rows = audit_rows(cfg, 2)
    assert len(rows) == 1000 == len({r["item_id"] for r in rows})
    assert all(r["status"] == "failed" and r["error"] for r in rows)
    assert {r["reason"] for r in rows} <= {"dns", "connect", "timeout", "blocked", "url", "tls"}
    urls = pq.read_table(meta, columns=["URL"]).column("URL").to_pylist()
    assert [r["item_id"] for r in rows][:5] == [url_id(u) for u in urls[:5]]  # ids from the URL, in row order


@pytest.mark.slow
def test_demo_step_builds_on_ray_and_validates(tmp_path):
    from uvd.runner import build
    from uvd.validate import validate

    with contextlib.ExitStack() as stack:
        datasets = laion_inputs(tmp_path / "inputs", stack)
        cfg = BuildConfig.model_validate({"out": str(tmp_path / "build"), "datasets": datasets})
        summary = build(cfg, workers=2)
    assert summary.succeeded
    assert validate(cfg.out) == []
    assert summary.inputs == 51 and summary.ok == 39  # 40 photos, one dropped by max_punsafe; one duplicate URL
    assert summary.failures["duplicate"] == 1 and summary.failures["filtered"] == 1
    assert summary.failures["blocked"] == 2 and summary.failures["timeout"] == 1


def test_https_goes_through_the_guarded_connection(tmp_path):
    """TLS on loopback with a self-signed certificate: the vetted-address connection keeps SNI and verification."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    photo = generated_photos(1, seed=2, sizes=(300, 300))[0]
    with ImageServer({"a.jpg": photo}, tls=(str(cert), str(key))) as srv:
        port = srv.httpd.server_address[1]
        with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "verify_tls": False})) as dl:
            assert dl.fetch(f"https://localhost:{port}/img/a.jpg").data == photo
        with Downloader(DownloadOptions(**FAST_DOWNLOAD)) as dl:  # self-signed: refused when verifying
            with pytest.raises(FetchError) as err:
                dl.fetch(f"https://localhost:{port}/img/a.jpg")
    assert err.value.kind == "tls" and "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    assert "attempts" not in str(err.value)  # a certificate problem is not retried


def test_per_host_limit_caps_concurrent_requests_to_one_host(server):
    server.max_in_flight = 0
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "concurrency": 8, "per_host": 2})) as dl:
        futures = [dl.submit(server.url(f"/slow/{i:02d}.jpg")) for i in range(8)]
        assert all(f.result().data == server.images[f"{i:02d}.jpg"] for i, f in enumerate(futures))
    assert server.max_in_flight == 2  # 8 threads, but never more than 2 at once on this host
