"""The mixture, sentence lengths, failures and shard sizes of an output as pictures (`uvd stats`)."""
from __future__ import annotations

from collections import Counter
from typing import Any

from uvd.manifest import read_units
from uvd.shard_summary import sentence_shards


def shard_sizes(out: str) -> list[int]:
    rows = read_units(out)
    if rows:
        return [r["shard_bytes"] for r in rows if r["status"] == "done"]
    from uvd.storage import fs_and_path

    return [fs_and_path(u)[0].size(fs_and_path(u)[1]) for u in sentence_shards(out)]


def _bars(ax: Any, counts: dict[str, int], title: str, colour: str) -> None:
    items = sorted(counts.items(), key=lambda kv: kv[1])
    if not items:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
    else:
        labels, values = zip(*items)
        bars = ax.barh(range(len(values)), values, color=colour)
        ax.set_yticks(range(len(values)), labels, fontsize=8)
        total = sum(values)
        for bar, v in zip(bars, values):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v} ({100 * v / total:.1f}%)",
                    va="center", fontsize=7)
        ax.set_xlim(0, max(values) * 1.35)
    ax.set_title(title, fontsize=10)


def plot(summary: dict[str, Any], sizes: list[int], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    _bars(axes[0, 0], summary["by_source"], "sentences by source", "#4C72B0")
    _bars(axes[0, 1], summary["by_task"], "sentences by task", "#55A868")
    _bars(axes[0, 2], summary["by_layout"], "sentences by layout", "#8172B2")
    per = Counter({int(k): v for k, v in summary["images_per_sentence"].items()})
    ax = axes[1, 0]
    ax.bar(list(per), list(per.values()), color="#C44E52")
    ax.set_xlabel("images per sentence")
    ax.set_ylabel("sentences")
    ax.set_xticks(range(1, max(per, default=16) + 1))
    ax.set_title("images per sentence", fontsize=10)
    _bars(axes[1, 1], summary["failures"],
          f"failures by reason ({summary['failed']} of {summary['inputs']} inputs)", "#DD8452")
    ax = axes[1, 2]
    ax.hist([s / 2**20 for s in sizes] or [0], bins=30, color="#937860")
    ax.set_xlabel("MiB")
    ax.set_ylabel("shards")
    ax.set_title(f"sentence shard sizes ({len(sizes)} shards)", fontsize=10)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
