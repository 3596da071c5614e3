"""Behaviour pin: a fixed config over sample_data/ gives exactly these sentence and audit shard bytes.

Refactors of the unit engine, the commit protocol or the layout must leave shard bytes unchanged;
a deliberate format change updates the pinned digests in the same commit, saying why.
"""
import hashlib
from pathlib import Path

from uvd.config import BuildConfig
from uvd.runner import build

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"

PINNED: dict[str, str] = {
    "audit/pairs/part-00000.parquet":
        "2c5db3c331236d9732a5c9b913a1670bc525669368410c436704a201a7304126",
    "audit/pairs/part-00001.parquet":
        "1130d0407369f5c25a748c75a65acc637d2989711ce596a5c0f9d931e412e1b6",
    "audit/photos/part-00000.parquet":
        "9c7d6fd152c2ef815e0ad0a11f31f98512d0458f08141b396d667f64e794236b",
    "audit/photos/part-00001.parquet":
        "0aef80b0161daca93cff3a78d4fa77d6db0b0ea56673a4da0fee111960f9c17c",
    "audit/photos/part-00002.parquet":
        "10e9e49c783f5e6d2e4d0f6430d54dfd10f2c1b14925db099e41a7080afe217d",
    "sentences/pairs/part-00000.parquet":
        "777206f30d9a743dc41f703a4f7542a56e18d55b10e7faff8ff5264ed12d6d0c",
    "sentences/pairs/part-00001.parquet":
        "08b347a2b6ee4e99124009ba80d49bec7a74bb1882bc43dca4527731835da834",
    "sentences/photos/part-00000.parquet":
        "6d1d9d9ea732ed4c8267db85bec80af030110f5b9171eaf1a355e3160133f771",
    "sentences/photos/part-00001.parquet":
        "a946fe270a24ab128ce7d2f8fcafc67440f6abdbbcaf9457227f4c84d6781364",
    "sentences/photos/part-00002.parquet":
        "4baa368349973c8aebdf998bc101c5eb03067115d1f41919cbee9eb0f1fb47c2",
}


def _cfg(out: Path) -> BuildConfig:
    return BuildConfig.model_validate({
        "out": str(out), "seed": 11,
        "datasets": [
            {"name": "photos", "source": "image_folder",
             "source_args": {"root": str(SAMPLES / "images"), "labels": False},
             "builder": "single", "items_per_unit": 3},
            {"name": "pairs", "source": "coco",
             "source_args": {"annotations": str(SAMPLES / "coco" / "test_coco.json"),
                             "images_dir": str(SAMPLES / "coco")},
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
