"""Hostile inputs for the sources of issue #23 part A (images, files, folders, LAION metadata,
img2dataset outputs, meshes, videos), generated small and in real formats. Each maker writes its
files under a folder and returns what the test must find: item id → the audit reason kind that
item must end with ("ok" for a sentence). Run as a script to write the corpus somewhere:

    python -m tests.support.hostile_corpus /tmp/corpus
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import struct
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

NON_UTF8 = b"caf\xe9-\xff"  # Latin-1 bytes: not UTF-8, so Python holds them as lone surrogates
NON_UTF8_ID = "caf\\xe9-\\xff"  # the item id such a name gets (sources.listing.printable_id)


def jpeg(w: int = 64, h: int = 48, grey: int = 120) -> bytes:
    img = np.full((h, w, 3), grey, np.uint8)
    img[:, : w // 2] = 255 - grey  # not flat: a real picture
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def png(w: int, h: int) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 90, np.uint8))
    assert ok
    return buf.tobytes()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height but carries almost no data (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---- images in a folder (source image_folder) -------------------------------------------------

def image_folder(root: Path) -> dict[str, str]:
    """A flat folder of photos, each one hostile in its own way (and two good ones)."""
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}

    def put(name: str, data: bytes, kind: str) -> None:
        _write(root / name, data)
        expect[name] = kind

    put("good.jpg", jpeg(), "ok")
    put("wide.jpg", jpeg(65000, 1), "too_large")  # 26 KB whose full resize took 13.5 GB
    put("tall.png", png(1, 2000), "too_large")  # 1.3 KB whose full resize took 0.6 GB
    put("long.jpg", jpeg(1200, 60), "ok")  # 20:1, within MAX_ASPECT: cropped before resizing
    put("bomb.png", png_header_only(100_000, 100_000), "too_large")
    put("garbage.jpg", os.urandom(300), "decode")
    put("empty.png", b"", "empty")
    put("..jpg", jpeg(grey=30), "ok")  # posixpath.splitext says these have no suffix
    put("...jpg", jpeg(grey=60), "ok")
    _write(root / os.fsdecode(NON_UTF8 + b".jpg"), jpeg(grey=200))
    expect[NON_UTF8_ID + ".jpg"] = "ok"
    os.mkfifo(root / "fifo.jpg")  # opened naively, blocks forever
    expect["fifo.jpg"] = "not_a_file"
    os.symlink("/dev/zero", root / "zero.jpg")  # read whole, never ends
    expect["zero.jpg"] = "not_a_file"
    with open(root / "huge.jpg", "wb") as f:  # sparse: 65 MiB on paper, nothing on disk
        f.write(jpeg()[:4])
        f.truncate(65 << 20)
    expect["huge.jpg"] = "too_large"
    return expect


def list_file(root: Path) -> tuple[Path, dict[str, str]]:
    """A list file whose lines try to leave its folder, beside one good line."""
    data, outside = root / "data", root / "outside"
    _write(data / "good.jpg", jpeg())
    _write(outside / "secret.jpg", jpeg(grey=10))
    os.symlink(outside, data / "link")
    lines = {"good.jpg": "ok", "../outside/secret.jpg": "bad_path", "sub/../../outside/secret.jpg": "bad_path",
             "link/secret.jpg": "bad_path", "missing.jpg": "io"}
    lst = _write(data / "list.txt", "".join(f"{name}\n" for name in lines).encode())
    return lst, lines


# ---- LAION metadata (source laion) ------------------------------------------------------------
# URLs point at loopback, which the address guard refuses without a connection: every row that
# gets past its metadata fails as `blocked`, so these builds never touch a network.

def _url(i: int) -> str:
    return f"http://127.0.0.1:9/{i}.jpg"


def parquet_bytes(n: int, first: int = 0) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"url": [_url(first + i) for i in range(n)], "caption": ["c"] * n}), sink)
    return sink.getvalue().to_pybytes()


def laion_parquets(root: Path) -> tuple[list[Path], dict[str, str]]:
    """Three metadata files: a good one, a 0-byte one and a truncated one."""
    good = _write(root / "a-good.parquet", parquet_bytes(3))
    empty = _write(root / "b-empty.parquet", b"")
    whole = parquet_bytes(5, 100)
    cut = _write(root / "c-truncated.parquet", whole[: len(whole) // 2])
    return [good, empty, cut], {"bad_file:b-empty.parquet": "bad_file", "bad_file:c-truncated.parquet": "bad_file"}


def laion_fifo(root: Path) -> tuple[list[Path], dict[str, str]]:
    """A good metadata file beside a FIFO named like one (opened naively, the plan blocks)."""
    good = _write(root / "a-good.parquet", parquet_bytes(2))
    os.mkfifo(root / "b-fifo.csv")
    return [good, root / "b-fifo.csv"], {"bad_file:b-fifo.csv": "bad_file"}


def laion_csv(root: Path) -> tuple[list[Path], dict[int, str]]:
    """A CSV with a ragged row, a NUL line, a URL that is not UTF-8 and a caption that opens a quote
    it never closes (rows after it must not be swallowed), plus an empty CSV beside it.
    Returns the files and row index → expected reason kind ("blocked" for rows that parse)."""
    text = (b"url,caption,width\n"
            + f"{_url(0)},fine,10\n".encode()
            + f"{_url(1)},ragged,20,extra\n".encode()
            + b"\x00\x00\x00\n"
            + b"http://127.0.0.1:9/\xff\xfe.jpg,bad utf8,30\n"
            + f'{_url(4)},"opens a quote,40\n'.encode()
            + f"{_url(5)},after,50\n".encode()
            + f"{_url(6)},after,60\n".encode())
    rows = {0: "blocked", 1: "metadata", 2: "metadata", 3: "metadata", 4: "metadata", 5: "blocked", 6: "blocked"}
    return [_write(root / "a.csv", text), _write(root / "b-empty.csv", b"")], rows


def laion_jsonl(root: Path) -> tuple[Path, dict[int, str]]:
    """A JSONL whose first line is not an object, with a line nested 100,000 deep."""
    text = (b"[1, 2, 3]\n" + json.dumps({"url": _url(1)}).encode() + b"\n" + b"[" * 100_000 + b"\n"
            + b'"a string"\n' + b"{broken\n" + json.dumps({"url": _url(5)}).encode() + b"\n")
    return _write(root / "meta.jsonl", text), {0: "metadata", 1: "blocked", 2: "metadata", 3: "metadata",
                                                4: "metadata", 5: "blocked"}


# ---- img2dataset outputs (source img2dataset) -------------------------------------------------

def _member(tf: tarfile.TarFile, name: str | bytes, data: bytes) -> None:
    info = tarfile.TarInfo(os.fsdecode(name) if isinstance(name, bytes) else name)
    info.size, info.mtime = len(data), 0
    tf.addfile(info, io.BytesIO(data))


def _sample_json(key: str, **extra: object) -> bytes:
    return json.dumps({"url": f"http://example.invalid/{key}.jpg", "key": key, "status": "success",
                       "original_width": 64, "original_height": 48, **extra}).encode()


def img2dataset_tars(root: Path) -> dict[str, str]:
    """Two webdataset tars: one with hostile samples (a JSON nested 100,000 deep, a member name
    that is not UTF-8, a member over the byte cap as the test sets it, a `..` member), and one
    cut short. Returns item key → expected kind (by `key`, the id a sample without URL gets)."""
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / "00000.tar", "w", format=tarfile.PAX_FORMAT) as tf:
        _member(tf, "000000000.jpg", jpeg())
        _member(tf, "000000000.json", b"{}")
        _member(tf, "000000001.jpg", jpeg())
        _member(tf, "000000001.json", b"[" * 100_000)
        _member(tf, NON_UTF8 + b".jpg", jpeg(grey=40))
        _member(tf, "000000003.jpg", jpeg(2000, 1500, grey=50))  # over the cap the test sets
        _member(tf, "000000004/../../x.jpg", jpeg())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(3):
            _member(tf, f"{i:09d}.jpg", jpeg(800, 600, grey=i * 40))
    whole = buf.getvalue()
    _write(root / "00001.tar", whole[: len(whole) // 2])
    return {"000000000": "ok", "000000001": "metadata", NON_UTF8_ID: "ok", "000000003": "too_large",
            "000000004/../../x": "unsafe_path", "bad_file:00001.tar": "bad_file"}


def img2dataset_files(root: Path) -> dict[str, str]:
    """The files layout: a good sample, a FIFO as an image, a JSON nested 100,000 deep."""
    shard = root / "00000"
    _write(shard / "000000000.jpg", jpeg())
    _write(shard / "000000000.json", b"{}")
    os.mkfifo(shard / "000000001.jpg")
    _write(shard / "000000002.jpg", jpeg())
    _write(shard / "000000002.json", b"[" * 100_000)
    return {"000000000": "ok", "000000001": "not_a_file", "000000002": "metadata"}


# ---- meshes (source objaverse) and videos (source video) --------------------------------------

def gltf_with_buffer(path: Path, uri: str) -> Path:
    """A one-triangle glTF whose vertex buffer is the file `uri` (a data file's path)."""
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
           "buffers": [{"uri": uri, "byteLength": 36}], "bufferViews": [{"buffer": 0, "byteLength": 36}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 0]}]}
    return _write(path, json.dumps(doc).encode())


TRIANGLE = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)


def meshes(root: Path) -> dict[str, str]:
    """glTFs whose buffer is good, a FIFO, outside the folder, absolute, or a device; and a mesh
    file that is itself a FIFO."""
    objs, outside = root / "objs", root / "outside"
    _write(objs / "tri.bin", TRIANGLE)
    _write(outside / "secret.bin", TRIANGLE)  # a name the folder does not have: no fallback finds it
    os.mkfifo(objs / "fifo.bin")
    gltf_with_buffer(objs / "good.gltf", "tri.bin")
    gltf_with_buffer(objs / "fifo_buffer.gltf", "fifo.bin")
    gltf_with_buffer(objs / "escape.gltf", "../outside/secret.bin")
    gltf_with_buffer(objs / "absolute.gltf", str(outside / "secret.bin"))
    gltf_with_buffer(objs / "device.gltf", "/dev/zero")
    os.mkfifo(objs / "fifo.glb")
    return {"good.gltf": "ok", "fifo_buffer.gltf": "texture", "escape.gltf": "texture", "absolute.gltf": "texture",
            "device.gltf": "texture", "fifo.glb": "not_a_file"}


def video_list(root: Path) -> tuple[Path, dict[str, str]]:
    """A list file naming a FIFO as a video, a path out of its folder and a device."""
    root.mkdir(parents=True, exist_ok=True)
    os.mkfifo(root / "fifo.mp4")
    lines = {"fifo.mp4": "not_a_file", "../escape.mp4": "bad_path", "/dev/zero": "not_a_file"}
    return _write(root / "videos.txt", "".join(f"{n}\n" for n in lines).encode()), lines


# ---- decoding under a memory limit -----------------------------------------------------------

MEMORY_CHILD = """
import json, resource, sys
import numpy as np
import uvd.image as ui
from uvd.errors import BadInput
from tests.support.hostile_corpus import jpeg, png
cases = {"wide": jpeg(65000, 1), "tall": png(1, 2000), "long": jpeg(2400, 60)}
if sys.argv[1] == "no_aspect_limit":
    ui.MAX_ASPECT = 10 ** 9  # the crop before the resize alone must bound the memory
elif sys.argv[1] == "resize_whole":
    ui.MAX_ASPECT, ui.CROP_FIRST_AREA = 10 ** 9, 10 ** 9  # the old way: resize all, then crop
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (int(sys.argv[2]) << 20),) * 2)
out = {}
for name, data in cases.items():
    try:
        img = ui.to_sentence_image(data)
        out[name] = "ok" if img.shape == (256, 256, 3) else f"shape {img.shape}"
    except BadInput as err:
        out[name] = err.kind
    except BaseException as err:
        out[name] = "crash: " + type(err).__name__
print(json.dumps(out))
"""


# ---- running them ------------------------------------------------------------------------------

@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a read that blocks (a FIFO opened for reading) is interrupted."""
    def expired(*_: Any) -> None:
        raise TimeoutError(f"hung for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def build_audit(out: Path, source: str, source_args: dict[str, Any], items_per_unit: int = 4,
                seconds: int = 120) -> tuple[Any, dict[str, dict[str, Any]], list[str]]:
    """Build one dataset in-process (builder `single`) under a deadline: (summary, the audit by
    item id, what `uvd validate` finds wrong)."""
    from uvd.config import BuildConfig
    from uvd.runner import build
    from uvd.validate import validate

    cfg = BuildConfig.model_validate({"out": str(out), "seed": 0, "datasets": [
        {"name": "hostile", "source": source, "source_args": source_args, "builder": "single",
         "items_per_unit": items_per_unit}]})
    with deadline(seconds):
        summary = build(cfg, use_ray=False)
    audit: dict[str, dict[str, Any]] = {}
    for shard in sorted((out / "audit").rglob("part-*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            assert row["item_id"] not in audit, f"two audit rows for {row['item_id']!r}"
            audit[row["item_id"]] = row
    return summary, audit, validate(str(out), decode_images=False)


def kind(row: dict[str, Any]) -> str:
    """An audit row's outcome: "ok", or the kind of its failure."""
    return "ok" if row["status"] == "ok" else str(row["reason"])


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "hostile_corpus")
    image_folder(out / "image_folder")
    list_file(out / "list_file")
    laion_parquets(out / "laion_parquet")
    laion_csv(out / "laion_csv")
    laion_fifo(out / "laion_fifo")
    laion_jsonl(out / "laion_jsonl")
    img2dataset_tars(out / "img2dataset_tars")
    img2dataset_files(out / "img2dataset_files")
    meshes(out / "meshes")
    video_list(out / "videos")
    print(f"hostile corpus written under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
