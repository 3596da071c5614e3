"""`uvd view` over HTTP (Starlette's TestClient): numbers equal to `uvd inspect`, paging, filters,
sentences, failures, tokens, 404s, and no path outside the build reachable."""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from tests.support.view_build import BAD, view_build
from uvd.cli.view.app import create_app
from uvd.cli.view_cmd import is_loopback
from uvd.cli.view_cmd import main as view_main
from uvd.manifest import read_units_table
from uvd.shard_summary import sentence_shards, summarise

PER_PAGE = 4


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> str:
    return view_build(tmp_path_factory.mktemp("view"))


def client(out: str, **kw: object) -> TestClient:
    return TestClient(create_app(out, per_page=PER_PAGE, check_outside_plan=False, **kw),
                      raise_server_exceptions=False)


@pytest.fixture(scope="module")
def c(out: str) -> TestClient:
    return client(out)


def shard_rows(out: str, dataset: str) -> list[dict]:
    """Every sentence of a dataset in unit order, read straight from the shards."""
    rows = []
    for url in sentence_shards(out):
        if f"/sentences/{dataset}/" in url:
            rows += pq.read_table(url).to_pylist()
    return rows


def test_home_shows_the_numbers_of_uvd_inspect(out: str, c: TestClient) -> None:
    inspected = summarise(sentence_shards(out))
    api = c.get("/api/build").json()
    t = api["totals"]
    for key in ("sentences", "images", "inputs", "ok", "failed", "bytes"):
        assert t[key] == inspected[key], key
    assert api["shards"] == inspected["shards"]
    assert api["failures"] == inspected["failures"] and sum(api["failures"].values()) == inspected["failed"] > 0
    assert api["mixture"] == inspected["by_task"]
    assert api["by_dataset"] == inspected["by_source"]
    assert t["units_done"] == t["units"] == 11
    page = c.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for key in ("sentences", "images", "inputs", "ok"):
        assert f'id="total-{key}">{inspected[key]}<' in page.text
    assert 'href="/dataset/photos"' in page.text and 'href="/dataset/classes"' in page.text


def test_dataset_pages_walk_through_every_sentence_in_order(out: str, c: TestClient) -> None:
    expected = [r["sentence_id"] for r in shard_rows(out, "photos")]
    first = c.get("/api/dataset/photos").json()
    assert first["total"] == len(expected) and first["pages"] == -(-len(expected) // PER_PAGE) > 2
    seen = []
    for p in range(first["pages"]):
        page = c.get(f"/api/dataset/photos?page={p}").json()
        assert len(page["sentences"]) == min(PER_PAGE, len(expected) - p * PER_PAGE)
        seen += [s["sentence_id"] for s in page["sentences"]]
    assert seen == expected
    last = c.get(f"/dataset/photos?page={first['pages'] - 1}").text
    assert expected[-1] in last and 'class="next"' not in last and 'class="prev"' in last
    assert c.get(f"/dataset/photos?page={first['pages']}").status_code == 404
    assert c.get("/dataset/photos?page=-1").status_code == 404
    assert c.get("/dataset/photos?page=abc").status_code == 404


def test_filters_narrow_the_grid(out: str, c: TestClient) -> None:
    classes = shard_rows(out, "classes")
    assert {r["task"] for r in classes} == {"category"} and {r["layout"] for r in classes} == {"sequence"}
    assert c.get("/api/dataset/classes?task=category").json()["total"] == len(classes)
    assert c.get("/api/dataset/classes?task=image").json()["total"] == 0
    narrowed = c.get("/api/dataset/classes?layout=sequence&task=category").json()
    assert narrowed["total"] == len(classes) and narrowed["layouts"] == ["sequence"]
    assert [s["sentence_id"] for s in narrowed["sentences"]] == [r["sentence_id"] for r in classes][:PER_PAGE]
    assert c.get("/api/dataset/classes?layout=single").json()["sentences"] == []
    html = c.get("/dataset/classes?task=image").text
    assert "No sentences with this filter" in html and 'class="sentence"' not in html


def test_filters_page_through_exactly_their_rows_of_a_mixed_dataset(out: str, c: TestClient) -> None:
    rows = shard_rows(out, "mixed")
    assert c.get("/api/dataset/mixed").json()["layouts"] == ["pairs", "single"]
    for query, keep in (("layout=pairs", lambda r: r["layout"] == "pairs"),
                        ("task=image", lambda r: r["task"] == "image"),
                        ("task=mirror&layout=pairs", lambda r: r["task"] == "mirror"),
                        ("task=image&layout=pairs", lambda r: False)):
        want = [r["sentence_id"] for r in rows if keep(r)]
        first = c.get(f"/api/dataset/mixed?{query}").json()
        got = []
        for p in range(first["pages"]):
            page = c.get(f"/api/dataset/mixed?{query}&page={p}").json()
            got += [s["sentence_id"] for s in page["sentences"]]
        assert got == want and first["total"] == len(want), query
        assert 0 < len(want) < len(rows) or query == "task=image&layout=pairs"


def test_sentence_page_has_its_images_meta_inputs_and_neighbours(out: str) -> None:
    rows = shard_rows(out, "classes")
    target = rows[1]
    fresh = client(out)  # no page seen yet: the id alone is enough (searched shard by shard)
    api = fresh.get(f"/api/sentence/{target['sentence_id']}").json()
    assert api["task"] == "category" and api["num_images"] == target["num_images"] == 3
    assert api["meta"] == json.loads(target["meta"])
    assert [i["item_id"] for i in api["inputs"]] == api["meta"]["item_ids"]
    assert {i["status"] for i in api["inputs"]} == {"ok"}
    assert api["previous"] == rows[0]["sentence_id"] and api["next"] == rows[2]["sentence_id"]
    for i, src in enumerate(api["images"]):
        img = fresh.get(src)
        assert img.status_code == 200 and img.content == target["images"][i]
        assert img.headers["content-type"] == "image/jpeg" and "max-age" in img.headers["cache-control"]
    html = fresh.get(f"/sentence/{target['sentence_id']}").text
    assert html.count("<img ") == 3 and 'id="previous"' in html and 'id="next"' in html
    assert rows[0]["sentence_id"] in html and "good/" in html
    # the first of a shard has no previous
    first = fresh.get(f"/api/sentence/{rows[0]['sentence_id']}?at=classes/00000").json()
    assert first["previous"] is None and first["next"] == rows[1]["sentence_id"]
    # a wrong unit in the link still finds it
    assert fresh.get(f"/api/sentence/{rows[2]['sentence_id']}?at=photos/00000").json()["row"] == 2


def test_failures_show_every_reason_of_the_audit_with_examples(out: str, c: TestClient) -> None:
    audit = pq.read_table(Path(out) / "audit").to_pylist()
    failed = [r for r in audit if r["status"] == "failed"]
    reasons = {r["reason"] for r in failed}
    api = c.get("/api/failures").json()
    assert set(api["reasons"]) == reasons and sum(api["reasons"].values()) == len(failed)
    for reason in reasons:
        assert api["examples"][reason], reason
        assert all(e["reason"] == reason and e["error"].startswith(reason) for e in api["examples"][reason])
    html = c.get("/failures").text
    for reason in reasons:
        assert f'data-reason="{reason}"' in html
    decode = [r for r in failed if r["reason"] == "decode"]
    paged = []
    first = c.get("/api/failures?reason=decode").json()
    for p in range(first["pages"]):
        paged += c.get(f"/api/failures?reason=decode&page={p}").json()["examples"]["decode"]
    assert sorted(e["item_id"] for e in paged) == sorted(r["item_id"] for r in decode)
    photos = c.get("/api/failures?dataset=photos").json()
    assert set(photos["reasons"]) == {BAD[k] for k in BAD}
    assert c.get("/failures?reason=nonsense").status_code == 404
    assert c.get("/failures?dataset=nope").status_code == 404


def test_bad_ids_are_404_pages_not_tracebacks(c: TestClient) -> None:
    for url in ("/sentence/0123456789abcdef01234567", "/sentence/no%20such%20thing", "/dataset/nope",
                "/image/0123456789abcdef01234567/0", "/tokens/0123456789abcdef01234567", "/nowhere"):
        r = c.get(url)
        assert r.status_code == 404, url
        assert "Traceback" not in r.text and 'id="error"' in r.text, url
    api = c.get("/api/sentence/0123456789abcdef01234567")
    assert api.status_code == 404 and "no sentence" in api.json()["error"]


def test_no_path_outside_the_build_can_be_requested(out: str, c: TestClient) -> None:
    secret = (Path(out) / "manifest.json").read_text()
    for url in ("/static/../manifest.json", "/static/%2e%2e/%2e%2e/%2e%2e/manifest.json",
                "/static/..%2f..%2fdata.py", "/static//etc/passwd", "//etc/passwd", "/static/%2fetc%2fpasswd",
                "/sentence/..%2f..%2fmanifest.json", "/dataset/%2e%2e", "/dataset/..%2fmanifest.json",
                "/image/%2e%2e/0", "/image/..%2f..%2fmanifest.json/0", "/manifest.json", "/sentences/photos/part-00000.parquet"):
        r = c.get(url)
        assert r.status_code in (400, 404), (url, r.status_code)
        assert secret not in r.text and "root:" not in r.text and "import " not in r.text, url
    assert c.get("/static/style.css").status_code == 200


def test_the_viewer_is_read_only(c: TestClient) -> None:
    for method in ("post", "put", "delete", "patch"):
        assert getattr(c, method)("/").status_code == 405
        assert getattr(c, method)("/api/build").status_code == 405


def _copy(out: str, tmp: Path) -> Path:
    copy = tmp / "build"
    shutil.copytree(out, copy)
    return copy


def test_a_symlink_out_of_the_build_is_not_followed(tmp_path: Path, out: str) -> None:
    copy = _copy(out, tmp_path)
    shard = copy / "sentences" / "photos" / "part-00000.parquet"
    outside = tmp_path / "elsewhere.parquet"
    shutil.move(shard, outside)
    os.symlink(outside, shard)
    r = client(str(copy)).get("/dataset/photos")
    assert r.status_code == 403 and "outside the build" in r.text
    assert client(str(copy)).get("/api/dataset/photos?page=1").status_code == 200  # other shards still read


def test_a_units_table_naming_paths_outside_the_build_is_refused(tmp_path: Path, out: str) -> None:
    copy = _copy(out, tmp_path)
    shutil.copy(copy / "sentences" / "photos" / "part-00000.parquet", tmp_path / "outside.parquet")
    table_url = copy / "manifest" / "units.parquet"
    t = pq.read_table(table_url)
    paths = t.column("shard_path").to_pylist()
    paths[0], paths[1] = "../outside.parquet", str(tmp_path / "outside.parquet")
    t = t.set_column(t.schema.get_field_index("shard_path"), "shard_path", pa.array(paths, pa.string()))
    pq.write_table(t, table_url)
    assert read_units_table(str(copy)) is not None
    local = client(str(copy))
    for page in (0, 1):
        r = local.get(f"/api/dataset/photos?page={page}")
        assert r.status_code == 403 and "outside the build" in r.json()["error"]


def test_units_outside_the_plan_are_listed(tmp_path: Path, out: str) -> None:
    copy = _copy(out, tmp_path)
    folder = copy / "sentences" / "photos"
    shutil.copy(folder / "part-00000.parquet", folder / "part-09999.parquet")
    shutil.copy(folder / "part-00000.stats.json", folder / "part-09999.stats.json")
    app = create_app(str(copy), per_page=PER_PAGE, check_outside_plan=False)
    assert app.state.build.check_outside_plan() == ["photos/09999"]
    html = TestClient(app).get("/").text
    assert "Units outside the plan" in html and "photos/09999" in html


def test_cli_refuses_what_is_not_a_build_and_warns_off_loopback(tmp_path: Path, out: str, capsys, monkeypatch,
                                                                  caplog) -> None:
    assert view_main([str(tmp_path / "nothing")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: served.update(host=host, port=port))
    with caplog.at_level(logging.WARNING):
        assert view_main([out, "--port", "8123"]) == 0
        assert served == {"host": "127.0.0.1", "port": 8123} and "no login" not in caplog.text
        assert view_main([out, "--host", "0.0.0.0"]) == 0
    assert served["host"] == "0.0.0.0" and "no login" in caplog.text


@pytest.mark.slow
def test_tokens_page_decodes_the_sentence_beside_the_original(tmp_path: Path, out: str) -> None:
    import torch

    from tokenize_job.encode import BatchEncoder
    from tokenize_job.job import find_sentence_units, tokenize_unit
    from tokenize_job.vqgan import VQGAN, VQGANConfig, load_tokenizer
    from uvd.layout import tokens_root

    copy = _copy(out, tmp_path)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    VQGAN(VQGANConfig.tiny()).save_pretrained(tmp_path / "tok", name="tiny")
    # one unit tokenized by the job's own unit function (the whole job would tokenize all 11)
    model = load_tokenizer(tmp_path / "tok")
    unit = next(u for u in find_sentence_units(str(copy)) if (u.source, u.unit) == ("classes", "00000"))
    tokenize_unit(BatchEncoder(model, batch_size=8), model.describe(), unit, tokens_root(str(copy), model.tokenizer_id), 8)
    rows = shard_rows(str(copy), "classes")
    local = client(str(copy), tokenizer=str(tmp_path / "tok"))
    api = local.get(f"/api/tokens/{rows[0]['sentence_id']}").json()
    assert api["num_images"] == 3 and len(api["psnr"]) == 3 and all(p > 0 for p in api["psnr"])
    assert api["tokenizer_id"] == model.tokenizer_id
    for src in api["decoded"]:
        img = local.get(src)
        assert img.status_code == 200 and img.headers["content-type"] == "image/png" and img.content[:4] == b"\x89PNG"
    html = local.get(f"/tokens/{rows[0]['sentence_id']}").text
    assert 'id="psnr"' in html and html.count("<img ") == 6
    missing = local.get(f"/tokens/{shard_rows(str(copy), 'photos')[0]['sentence_id']}")  # its unit not tokenized
    assert missing.status_code == 404 and "no token shard" in missing.text
    assert client(str(copy)).get(f"/tokens/{rows[0]['sentence_id']}").status_code == 404  # without --tokenizer


def test_a_build_on_s3_is_viewed_the_same(out: str, c: TestClient) -> None:
    """The build uploaded to a moto S3 server on loopback: the same numbers, pages and image bytes."""
    import fsspec

    from tests.support.counting_s3 import counting_moto

    with counting_moto() as (_, count):
        fsspec.filesystem("s3").put(out.rstrip("/") + "/", "uvd/build", recursive=True)
        remote = client("s3://uvd/build")
        assert remote.get("/api/build").json()["totals"] == c.get("/api/build").json()["totals"]
        local_page = c.get("/api/dataset/mixed?page=1").json()
        assert remote.get("/api/dataset/mixed?page=1").json() == local_page
        s = local_page["sentences"][-1]
        assert remote.get(f"/api/sentence/{s['sentence_id']}?at={s['at']}").json()["meta"]["item_id"]
        assert remote.get(f"/image/{s['sentence_id']}/0?at={s['at']}").content == c.get(
            f"/image/{s['sentence_id']}/0?at={s['at']}").content
        assert remote.get("/api/failures").json()["reasons"] == c.get("/api/failures").json()["reasons"]
        assert count.total > 0


def test_a_file_url_is_a_local_build(out: str, c: TestClient) -> None:
    local = client("file://" + out)
    assert local.get("/api/build").json()["totals"] == c.get("/api/build").json()["totals"]
    assert local.get("/api/dataset/photos?page=1").json()["sentences"] == c.get("/api/dataset/photos?page=1").json()["sentences"]


def test_a_damaged_shard_or_table_is_a_clear_error(tmp_path: Path, out: str, capsys) -> None:
    copy = _copy(out, tmp_path)
    shard = copy / "sentences" / "photos" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:100])  # truncated: no footer
    local = client(str(copy))
    r = local.get("/dataset/photos")
    assert r.status_code == 404 and "cannot be read" in r.text and "Traceback" not in r.text
    assert local.get("/api/dataset/photos?page=1").status_code == 200  # the other units still show
    (copy / "manifest" / "units.parquet").write_bytes(b"not parquet")
    assert view_main([str(copy)]) == 2
    assert "units.parquet is missing or unreadable" in capsys.readouterr().err


def test_images_are_served_with_the_type_of_their_bytes() -> None:
    import numpy as np

    from uvd import codec
    from uvd.cli.view.app import image_type

    img = np.zeros((16, 16, 3), np.uint8)
    assert image_type(codec.encode(img)) == "image/jpeg"
    assert image_type(codec.encode(img, lossless=True)) == "image/png"  # rendered annotations
    assert image_type(b"not an image") == "application/octet-stream"
