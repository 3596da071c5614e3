"""`uvd train CONFIG [--set key=value …] [--stop-after N]`: one process; torchrun for several."""
from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from train.loop import main as train_main  # torch is imported only when the command runs

    return train_main(argv)
