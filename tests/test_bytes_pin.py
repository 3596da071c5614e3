"""Behaviour pin: a fixed config over sample_data/ gives exactly these sentence and audit shard bytes.

Refactors of the unit engine, the commit protocol or the layout must leave shard bytes unchanged;
a deliberate format change updates the pinned digests in the same commit, saying why.

The input paths are part of the bytes (the config hash in every file's metadata), so the samples
are copied to one fixed folder first: the pin then holds in any checkout. These digests were
computed at that folder by the code before the engine and layout refactors (commit cff41be).
The sentence digests were updated once since, deliberately: photos shrunk less than 2× at full
resolution are resized with a small Gaussian and INTER_CUBIC instead of INTER_AREA
(`uvd.image.resample`); the audit digests did not change.
"""
import hashlib
import shutil
import tempfile
from pathlib import Path

from uvd.config import BuildConfig
from uvd.runner import build

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
FIXED = Path(tempfile.gettempdir()) / "uvd-bytes-pin"

PINNED: dict[str, str] = {
    "audit/pairs/part-00000.parquet":
        "38e83b0ae4752cd1004f01c8f410b9e6d9615e5cba63d1b40b503bbffeec6049",
    "audit/pairs/part-00001.parquet":
        "cb156d699f383c7fed24f70f499dad8e50078704c1efe1e16a586e8e9e368e1b",
    "audit/photos/part-00000.parquet":
        "da322ce9a70279a9e8dca671e7a9e7002fafb0245afcff5d7b2d44da9c667f71",
    "audit/photos/part-00001.parquet":
        "17b9b605aa345e41fe6e2db0d9e51668fea9419767a476d87464aa7077b5dd6a",
    "audit/photos/part-00002.parquet":
        "7bd82bb39b76f69ddd71f3870763571f4b2b117b373c61ff110d0337fda99d6f",
    "sentences/pairs/part-00000.parquet":
        "759d9d466387ff293b205a0cfc03f32d537b635c490973b473bbafe48656835d",
    "sentences/pairs/part-00001.parquet":
        "a1250d223ec9f98114af3bf00ac90fc929fbed2bdca58bb9dd911faacbcd2eff",
    "sentences/photos/part-00000.parquet":
        "e0a2c7a3fa7e0cc975c45741d801ec1fcaba1bbacb8c816d57cb0c20bff736bc",
    "sentences/photos/part-00001.parquet":
        "d742ea3faff4919866c91a4e0e4eb0b5399a9388e6cb4cd433be244d816df1b4",
    "sentences/photos/part-00002.parquet":
        "5154e38044b7672a178427a9d1414f36f4947dd68a8ca14a9e62a44d592a5ac7",
}


def _fixed_samples() -> Path:
    for name in ("images", "coco"):
        shutil.copytree(SAMPLES / name, FIXED / name, dirs_exist_ok=True)
    return FIXED


def _cfg(out: Path) -> BuildConfig:
    samples = _fixed_samples()
    return BuildConfig.model_validate({
        "out": str(out), "seed": 11,
        "datasets": [
            {"name": "photos", "source": "image_folder",
             "source_args": {"root": str(samples / "images"), "labels": False},
             "builder": "single", "items_per_unit": 3},
            {"name": "pairs", "source": "coco",
             "source_args": {"annotations": str(samples / "coco" / "test_coco.json"),
                             "images_dir": str(samples / "coco")},
             "builder": "pairs", "builder_args": {"task": "detection", "pairs": 2}, "items_per_unit": 2},
        ]})


def _digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("part-*.parquet"))}


def test_shard_bytes_are_pinned(tmp_path):
    out = tmp_path / "out"
    summary = build(_cfg(out), use_ray=False)
    assert summary.succeeded and summary.sentences > 0
    assert _digests(out) == PINNED
