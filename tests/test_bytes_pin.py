"""Behaviour pin: a fixed config over sample_data/ gives exactly these sentence and audit shard bytes.

Refactors of the unit engine, the commit protocol or the layout must leave shard bytes unchanged;
a deliberate format change updates the pinned digests in the same commit, saying why.

The input paths are part of the bytes (the config hash in every file's metadata), so the samples
are copied to one fixed folder first: the pin then holds in any checkout. These digests were
computed at that folder by the code before the engine and layout refactors (commit cff41be).
The sentence digests were updated once since, deliberately: photos shrunk less than 2× at full
resolution are resized with a small Gaussian and INTER_CUBIC instead of INTER_AREA
(`uvd.image.resample`); the audit digests did not change. Updated again, deliberately (issues 22
and 24): shard metadata carries the dataset's recipe hash instead of the whole config's (rows
unchanged: checked row by row against the previous pin's build), and `pairs` now pairs across the
whole dataset with LVM's 5 epochs for detection (10 units instead of 2).
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
        "2913e5e2ce8c99e23c7d6b4e936ab5a6a160842dab981df0aa1f8b43f949b6aa",
    "audit/pairs/part-00001.parquet":
        "fad3d8d92606c9223cb461d38e648d10bde6f52da0dd56197d4cddbdf6a17fb1",
    "audit/pairs/part-00002.parquet":
        "3e64851b6a713d23a3e8649c809d5290aa577cf8884f3460a78237080b6e019d",
    "audit/pairs/part-00003.parquet":
        "5404a9e8843c2a89d9062d690846ea040d5c68d26aaf7fd144688d419a14ea1a",
    "audit/pairs/part-00004.parquet":
        "dabe0953f04d84f30204a605e70b260e55d16c4613d145774291bfcbd184bcfa",
    "audit/pairs/part-00005.parquet":
        "09b25776a30f54c82f07f15811cf4800c98f131431aba50c4d59ff6d06628e90",
    "audit/pairs/part-00006.parquet":
        "c141acef696599de5ff325e96725c75e7b060e760cba748c0522e207b6b9eb4d",
    "audit/pairs/part-00007.parquet":
        "3e6424519846a99ad3118487430f1c99d3232fb79e7ef2a8523f59336d9312f3",
    "audit/pairs/part-00008.parquet":
        "98d8bbb62e62f5f6a08b82b5788cf71d8b77d70af6eaa6adfbc9dc1008af2a9b",
    "audit/pairs/part-00009.parquet":
        "120092aa0c0fdb170709eaba658f1c4985649b21d0928dd199230a4149d6194a",
    "audit/photos/part-00000.parquet":
        "1a1b080463dc109e39385f4ca0fe62c16ec8d0a8a6e2fcf1746b7e167800b53a",
    "audit/photos/part-00001.parquet":
        "99c35c302b60a470ce514bff7b9b5ba813d4a73a258944caa9108139d20785b4",
    "audit/photos/part-00002.parquet":
        "99fab177b03317e9d2e87599c57a3b72ff564fdd1756836fcda45362c4738cbe",
    "sentences/pairs/part-00000.parquet":
        "d6bc3fc245f187204bbbd08d6769e3ea648217f79b4b3550e0b0d87962707d3d",
    "sentences/pairs/part-00001.parquet":
        "9afc911a9b9c89d3343437453723296c9cee2aff9fcd7ea89768d122285054f1",
    "sentences/pairs/part-00002.parquet":
        "9bf3216cc6d3043be40a1036d8377f4431f080a316e57315f56940a9f4bfcbf5",
    "sentences/pairs/part-00003.parquet":
        "2dff4d7c1ed9b31a7125273f2de9c3c46312c93c7ba6baec5b3147b9c366e439",
    "sentences/pairs/part-00004.parquet":
        "6a82ead1bb0cdb85cce60923c4912e37dbe19eeeb75304bebf4519d1c61924d5",
    "sentences/pairs/part-00005.parquet":
        "16a999cb069063d26fb5e2a9ebd1cc398366d1a0c8833ac0cd9f238bfc00dbe5",
    "sentences/pairs/part-00006.parquet":
        "d16279877174d5814da149a8cde7eeea94d0d4d934d0fd430b048976cda9b172",
    "sentences/pairs/part-00007.parquet":
        "25ae1a384f42fe53c5b4a4c36dbcdcecee52cf5c567831e41be062e4e389ee6b",
    "sentences/pairs/part-00008.parquet":
        "e2e2c6d3762e941548032f4cf48e9ad2e7b3d62098dd6b11b29e8a5ce5c8f5f8",
    "sentences/pairs/part-00009.parquet":
        "d354c6910e66d2efc18f572a3f154747dda6405ede58ae61cc7ec90ee48657bb",
    "sentences/photos/part-00000.parquet":
        "0115aeb8fd6e268a20e07db8907c43a93414fe8a9367adadf58bfaf3ea38371c",
    "sentences/photos/part-00001.parquet":
        "d4bd130002f4a5984d02ad5a4ccf90104b1db51116e57fc48d6236b40883f2e6",
    "sentences/photos/part-00002.parquet":
        "6a44c5699402bcad1ee5ecb07a1ccaf40b542a67244b3ce5c749f8b1ef76bc8b",
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
