"""The GPU suite: tokenizer, tokenize job, trainer and checkpoints on one GPU, in one command.

    PYTHONUNBUFFERED=1 python benchmarks/gpu_suite.py --out gpu_suite.md [--budget-s 450]
    python benchmarks/gpu_suite.py --smoke        # the same code, tiny configs, CPU (in the tests)

(a) VQGAN encode, LVM's config (random weights), the encoder's GPU path (bf16 weights, contiguous)
    eager and compiled over a batch sweep, compiled with CUDA graphs at batch 64, plus channels-last
    and the earlier autocast path at one batch: images/s, % of dense bf16 peak; token agreement of
    the default path with the fp32 reference on real photos. benchmarks/gpu_vqgan_variants.py
    has the full variant grid.
(b) The tokenize job end to end over a few thousand images (Ray Data's GPU actor pool when Ray
    is installed, else the job's in-process path, said so in the row): images/s and where the
    time goes (read, decode, encode incl. host→device transfer, write = the rest).
(c) Training steps of LVM's 300M and 1B at seq 4096, bf16 autocast, torch.compile off/on, on
    synthetic tokens (the step the trainer runs: same model, loss, AdamW, clipping): tokens/s,
    MFU (6·N + attention FLOPs per token, as the trainer logs it), peak memory.
(d) DCP save and load of the 1B model + AdamW state (train.checkpoint), and how long an async
    save blocks training (the run's first async save, which allocates the staging copy, and the next),
    side by side with DCP's default staging (a fresh copy at every save).

Each part writes its rows or its error; a global time budget skips what would not fit, and a
watchdog writes what is done and exits if a step hangs (a slow compile), so the suite ends in
time. Random weights are fine for speed; agreement on real photos is with random weights too.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

SAMPLES = ROOT / "sample_data"
DENSE_BF16_PEAK = 989e12  # H100/H200 SXM, dense bf16


class Suite:
    def __init__(self, out: str | None, budget_s: float, smoke: bool, ckpt_size: str = "1b") -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.out, self.smoke = out, smoke
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget_s
        self.device = torch.device("cpu" if smoke or not torch.cuda.is_available() else "cuda")
        self.ckpt_size = ckpt_size  # part (d)'s model; 300m fits a CPU machine's memory
        self.lock = threading.Lock()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def row(self, part: str, setting: str, result: str) -> None:
        with self.lock:
            self.rows.append((part, setting, result))
            print(f"| {part} | {setting} | {result} |", flush=True)
            self.write()

    def header(self) -> str:
        dev = torch.cuda.get_device_name(0) if self.device.type == "cuda" else "CPU (smoke)" if self.smoke else "CPU"
        return (f"# GPU suite{' (smoke)' if self.smoke else ''}\n\ndevice: {dev}; torch {torch.__version__}; "
                f"elapsed {time.monotonic() - self.t0:.0f} s\n\n| part | setting | result |\n|---|---|---|\n")

    def table(self) -> str:
        return self.header() + "".join(f"| {p} | {s} | {r} |\n" for p, s, r in self.rows)

    def write(self) -> None:
        if self.out:
            Path(self.out).parent.mkdir(parents=True, exist_ok=True)
            Path(self.out).write_text(self.table())

    def part(self, name: str, fn: Callable[["Suite"], None], need_s: float) -> None:
        """Run one part; its error becomes its row; skipped when the budget cannot hold it."""
        if self.left() < need_s:
            self.row(name, "skipped", f"budget: {self.left():.0f} s left, needs ~{need_s:.0f} s")
            return
        try:
            fn(self)
        except Exception as err:  # noqa: BLE001 — a failing part must not take the others down
            traceback.print_exc()
            self.row(name, "error", f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


class StepTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise StepTimeout in the main thread after `seconds` (a compile that would eat the budget)."""
    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise StepTimeout(f"over its {seconds:.0f} s limit")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device) -> float:
    if device.type == "cuda":
        from train.loop import GPU_PEAK_FLOPS

        name = torch.cuda.get_device_name(device)
        return next((v for k, v in GPU_PEAK_FLOPS.items() if k in name), DENSE_BF16_PEAK)
    from train.loop import measured_cpu_flops

    return measured_cpu_flops()


def real_photos(size: int) -> np.ndarray:
    from uvd.config import ImageSpec
    from uvd.image import to_sentence_image

    files = sorted((SAMPLES / "images").glob("*.jpg")) + sorted((SAMPLES / "coco").glob("*.jpg"))
    return np.stack([to_sentence_image(f.read_bytes(), ImageSpec(size=size)) for f in files])


def smoke_vqgan() -> Any:
    import dataclasses

    from tokenize_job.vqgan import VQGANConfig

    return dataclasses.replace(VQGANConfig.tiny(), resolution=64)  # 16 tokens per image: quick on 2 cores


# ---------------------------------------------------------------- (a) VQGAN encode
# label → BatchEncoder options; the GPU default of the tokenize job is "bf16 weights, contiguous, compiled"
VARIANTS: dict[str, dict[str, Any]] = {
    f"{prec_label}, {fmt_label}, {mode_label}": {"precision": prec, "channels_last": cl, "compile": comp}
    for prec, prec_label in (("autocast", "autocast bf16"), ("bf16", "bf16 weights"))
    for cl, fmt_label in ((False, "contiguous"), (True, "channels-last"))
    for comp, mode_label in ((False, "eager"), (True, "compiled"))
}
# The GPU default with CUDA graphs (inductor's reduce-overhead): launch overhead off the clock
GRAPHS = "bf16 weights, contiguous, compiled, CUDA graphs"
VARIANTS[GRAPHS] = {**VARIANTS["bf16 weights, contiguous, compiled"], "compile_mode": "reduce-overhead"}


def encoder_flops(model: Any, device: torch.device) -> float:
    """FLOPs of one image through encode_latent, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    from tokenize_job.encode import to_pixels

    res = model.config.resolution
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model.encode_latent(to_pixels(np.zeros((1, res, res, 3), np.uint8), device, False))
    return float(fc.get_total_flops())


def part_encode(s: Suite) -> None:
    from tokenize_job.encode import BatchEncoder
    from tokenize_job.vqgan import VQGAN, VQGANConfig

    cfg = smoke_vqgan() if s.smoke else VQGANConfig.lvm()
    torch.manual_seed(0)
    model = VQGAN(cfg).to(s.device).eval()
    flops, peak = encoder_flops(model, s.device), peak_flops(s.device)
    rng = np.random.default_rng(0)
    photos = real_photos(cfg.resolution)
    sweep = [2, 4] if s.smoke else [64, 128, 256, 512]
    default = "bf16 weights, contiguous, compiled"  # what BatchEncoder does on a GPU unless told otherwise
    # The GPU default eager over the sweep, compiled at two batches (a compile is ~15-20 s each) and
    # with CUDA graphs at the smallest, the layouts and the earlier path (autocast, channels-last) at
    # one; then the best of these again with cuDNN's autotuner (not set by the job).
    runs = ([("bf16 weights, contiguous, eager", b) for b in sweep] + [(default, b) for b in sweep[::2]]
            + [(GRAPHS, sweep[0])]
            + [(v, sweep[-2]) for v in ("bf16 weights, channels-last, eager", "autocast bf16, channels-last, eager")])
    best = (0.0, runs[0])
    for name, batch in runs + [("", 0)]:
        autotune = not name
        name, batch = best[1] if autotune else (name, batch)
        if s.left() < 30:
            s.row("a", f"encode {name}, batch {batch}", "skipped: budget")
            continue
        torch.backends.cudnn.benchmark = autotune
        torch._dynamo.reset()  # each compiled encoder afresh, within dynamo's recompile limit
        opts = dict(VARIANTS[name])
        if opts["compile"] and s.device.type == "cpu":
            opts["compile"] = "eager"  # dynamo traces the same code; no kernels built on the test machine
        images = rng.integers(0, 256, (batch * (1 if s.smoke else 3), cfg.resolution, cfg.resolution, 3), np.uint8)
        enc = BatchEncoder(model, batch_size=batch, **opts)
        if s.smoke:
            enc.batch_size = batch  # the CPU path would run one image per forward
        t = time.perf_counter()
        with time_limit(min(s.left() - 20, 120)):
            enc.encode(images[:batch])  # warm-up: compilation; cuDNN picks (or, autotuning, measures) kernels
        sync(s.device)
        warm = time.perf_counter() - t
        t = time.perf_counter()
        enc.encode(images)
        sync(s.device)
        rate = len(images) / (time.perf_counter() - t)
        best = max(best, (rate, (name, batch))) if not autotune else best
        s.row("a", f"VQGAN encode {'tiny' if s.smoke else 'LVM'} config, {name}, batch {batch}"
                   f"{', cudnn.benchmark on' if autotune else ''}",
              f"{rate:,.0f} images/s; {100 * rate * flops / peak:.1f}% of peak ({flops / 1e9:.1f} GFLOP/image, "
              f"peak {peak / 1e12:.3g} TFLOP/s); warm-up {warm:.0f} s")
    torch.backends.cudnn.benchmark = False
    torch._dynamo.reset()
    opts = dict(VARIANTS[default] if s.device.type == "cuda" else {})  # on CPU: the CPU default path
    fast = BatchEncoder(model, batch_size=64, **opts).encode(photos)
    ref = BatchEncoder(model, batch_size=8, reference=True).encode(photos)
    agree = float((fast == ref).mean())
    label = default if s.device.type == "cuda" else "CPU path (fp32, channels-last)"
    s.row("a", f"token agreement, {label} vs fp32 reference, {len(photos)} real photos (sample_data)",
          f"{100 * agree:.2f}% of {fast.size} tokens")


# ---------------------------------------------------------------- (b) tokenize job
def _sentence_build(root: Path, photos: np.ndarray, images: int, per_unit: int, per_sentence: int) -> None:
    from uvd.layout import stats_file
    from uvd.records import VisualSentence
    from uvd.shards import sentence_row, sentence_writer
    from uvd.storage import write_json

    rng = np.random.default_rng(1)
    done = 0
    unit = 0
    while done < images:
        url = str(root / "sentences" / "photos" / f"part-{unit:05d}.parquet")
        writer = sentence_writer(url)
        n_unit = min(per_unit, images - done)
        for i in range(0, n_unit, per_sentence):
            n = min(per_sentence, n_unit - i)
            # Real photos, flipped/shifted so that no two images are byte-identical.
            imgs = [np.roll(photos[int(rng.integers(len(photos)))], int(rng.integers(photos.shape[2])), axis=1)
                    for _ in range(n)]
            row, nbytes = sentence_row(VisualSentence(f"s{unit}-{i}", "photos", "image", "sequence", imgs), 90)
            writer.add(row, nbytes)
        info = writer.close()
        write_json(stats_file(url), {"shard": {"path": url, "rows": info.rows, "bytes": info.bytes,
                                               "sha256": info.sha256}, "sentences": info.rows})
        done += n_unit
        unit += 1


def part_tokenize(s: Suite) -> None:
    from tokenize_job.encode import to_pixels
    from tokenize_job.vqgan import VQGAN, VQGANConfig
    from uvd.storage import glob, read_json

    try:
        import ray  # noqa: F401
        have_ray = True
    except ImportError:
        have_ray = False
    use_ray = have_ray and not s.smoke
    cfg = smoke_vqgan() if s.smoke else VQGANConfig.lvm()
    n_images, per_unit = (8, 4) if s.smoke else (3072, 256)
    with tempfile.TemporaryDirectory() as tmp:
        tok = Path(tmp) / "tokenizer"
        torch.manual_seed(0)
        VQGAN(cfg).save_pretrained(tok, name="bench")
        photos = real_photos(cfg.resolution)
        t = time.perf_counter()
        _sentence_build(Path(tmp) / "build", photos, n_images, per_unit, 4)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        with time_limit(min(s.left() - 10, 200)):
            # as `uvd tokenize` runs by default: --batch-size 64, which also sets how many images
            # are pooled across sentences per encode
            root, units, warm = _run_tokenize(Path(tmp) / "build", tok, use_ray, batch=2 if s.smoke else 64,
                                              image_batch=4 if s.smoke else 64)
        wall = time.perf_counter() - t - warm
        secs: dict[str, float] = {}
        images = 0
        for st_url in glob(root, "*/part-*.stats.json"):
            st = read_json(st_url)
            images += int(st.get("images", 0))
            for k, v in st.get("seconds", {}).items():
                secs[k] = secs.get(k, 0.0) + float(v)
        # Host→device transfer and uint8→float conversion, inside "encode" above, measured alone.
        x = photos[np.arange(min(256, n_images)) % len(photos)]
        to_pixels(x, s.device, False)
        sync(s.device)
        t = time.perf_counter()
        for _ in range(3):
            to_pixels(x, s.device, False)
        sync(s.device)
        transfer = (time.perf_counter() - t) / (3 * len(x)) * images
    how = "Ray Data, GPU actor pool" if use_ray else \
        f"the actor's code in-process, no Ray{' (Ray unavailable)' if not have_ray else ''}"
    total = secs.get("total", 0.0)
    parts = {k: secs.get(k, 0.0) for k in ("read", "decode", "encode")}
    parts["write+audit"] = max(0.0, total - sum(parts.values()))
    split = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in parts.items()) if total else "no unit stats"
    load = f"after model load + compile ({warm:.0f} s, apart)" if warm else "incl. model load + compile"
    s.row("b", f"tokenize job, {how}, encoder on its default path for the device, batch {2 if s.smoke else 64}, "
               f"{images} images in {units} units (sentences of 4; build of the input {build_s:.0f} s)",
          f"{images / wall:,.0f} images/s end to end ({wall:.1f} s, {load}); unit time: {split}; "
          f"host→device transfer ≈ {transfer:.2f} s of encode")


def _run_tokenize(build: Path, tok: Path, use_ray: bool, batch: int, image_batch: int) -> tuple[str, int, float]:
    """The job through Ray Data; without Ray, the GPU actor's own code over the units in turn (the
    job's in-process path encodes where the driver's model is, the CPU). Also the seconds of the
    actor's start-up and first batch (model load, compilation), when they can be told apart."""
    from tokenize_job import job
    from tokenize_job.vqgan import load_tokenizer

    if use_ray:
        result = job.tokenize(str(build), str(tok), batch_size=batch, image_batch=image_batch, log=lambda m: None)
        return result.root, len(result.manifest.get("shards", [])), 0.0
    root = job.tokens_root(str(build), load_tokenizer(tok).tokenizer_id)
    units = job.find_sentence_units(str(build))
    t = time.perf_counter()
    actor = job.TokenizeActor(str(tok), root, batch, image_batch)
    res = actor.model.config.resolution
    actor.encoder.encode(np.zeros((batch, res, res, 3), np.uint8))  # compiles the batch's graph
    sync(actor.model.device)
    warm = time.perf_counter() - t
    for u in units:
        out = actor({k: [v] for k, v in u.as_row().items()})
        if out["error"][0]:
            raise RuntimeError(f"unit {u.unit}: {out['error'][0]}")
    return root, len(units), warm


# ---------------------------------------------------------------- (c) training
def part_train(s: Suite, compile_: bool) -> None:
    from train.config import Config
    from train.loop import make_optimizer
    from train.model import ModelArgs, Transformer, loss_fn

    sizes = [("tiny", 64, 2)] if s.smoke else [("300m", 4096, 8), ("1b", 4096, 4)]
    for size, seq, batch in sizes:
        need = 60 if compile_ else 25
        if s.left() < need:
            s.row("c", f"train {size} compile {'on' if compile_ else 'off'}", "skipped: budget")
            continue
        cfg = Config.model_validate({"model": {"size": size, "max_seq_len": seq}, "data": {"tokens": ["-"], "seq_len": seq}})
        torch.manual_seed(0)
        model = Transformer(ModelArgs.from_config(cfg.model)).to(s.device)
        optim = make_optimizer(model, cfg)
        fwd = torch.compile(model, backend="inductor" if s.device.type == "cuda" else "eager") if compile_ else model
        x = torch.randint(0, 8192, (batch, seq + 1), device=s.device)
        amp = torch.autocast(s.device.type, dtype=torch.bfloat16) if s.device.type == "cuda" else nullcontext()

        def step() -> None:
            with amp:
                loss = loss_fn(fwd(x[:, :-1]), x[:, 1:], cfg.data.pad_id)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            optim.zero_grad(set_to_none=True)

        if s.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(s.device)
        label = f"train {size}, seq {seq}, batch {batch}, {'bf16' if s.device.type == 'cuda' else 'fp32'}, " \
                f"torch.compile {'on' if compile_ else 'off'}"
        try:
            with time_limit(min(s.left() - 10, 150 if compile_ else 90)):
                t = time.perf_counter()
                for _ in range(1 if s.smoke else 3):  # warm-up (and compilation)
                    step()
                sync(s.device)
                warm = time.perf_counter() - t
                n = 2 if s.smoke else 6
                t = time.perf_counter()
                for _ in range(n):
                    step()
                sync(s.device)
                dt = (time.perf_counter() - t) / n
        except StepTimeout as err:
            s.row("c", label, f"stopped: {err}")
            del model, optim, fwd, x
            continue
        except Exception as err:  # noqa: BLE001 — out of memory at one size must not cost the other
            traceback.print_exc()
            s.row("c", label, f"error: {type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}")
            del model, optim, fwd, x
            if s.device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        tps = batch * seq / dt
        mfu = model.flops_per_token(seq) * tps / peak_flops(s.device)
        mem = f"{torch.cuda.max_memory_allocated(s.device) / 2**30:.1f} GiB peak" if s.device.type == "cuda" else "n/a on CPU"
        s.row("c", label, f"{tps:,.0f} tokens/s; MFU {100 * mfu:.1f}%; {mem}; "
                          f"{model.num_params() / 1e6:.0f}M params; warm-up {warm:.0f} s")
        del model, optim, fwd, x
        if s.device.type == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------- (d) checkpoints
def part_checkpoint(s: Suite) -> None:
    from train import checkpoint
    from train.config import Config
    from train.loop import app_state, make_optimizer, restore_app_state
    from train.model import ModelArgs, Transformer

    import socket

    import torch.distributed as dist

    if not dist.is_initialized():  # a one-rank group, as under torchrun: DCP's distributed path, async included
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    size = "tiny" if s.smoke else s.ckpt_size
    cfg = Config.model_validate({"model": {"size": size}, "data": {"tokens": ["-"], "seq_len": 64}})
    model = Transformer(ModelArgs.from_config(cfg.model)).to(s.device)
    optim = make_optimizer(model, cfg)
    state = app_state(model, optim)  # creates AdamW's moments
    nbytes = sum(t.numel() * t.element_size() for t in _tensors(state))
    with tempfile.TemporaryDirectory(dir=os.environ.get("UVD_SUITE_TMP")) as tmp:
        ck = checkpoint.Checkpointer(tmp, keep=1)
        t = time.perf_counter()
        ck.save(1, state, {"step": 1})
        save_s = time.perf_counter() - t
        ack = checkpoint.Checkpointer(tmp, keep=1, async_save=True)
        blocking = []
        for step in (2, 3):  # the first allocates (and on CUDA pins) the staging copy; the next reuse it
            os.sync()  # the last save's dirty pages written back first: no save pays for another's
            t = time.perf_counter()
            ack.save(step, app_state(model, optim), {"step": step})
            blocking.append(time.perf_counter() - t)
            ack.wait()
            async_total = time.perf_counter() - t
        ack.close()
        # Side by side: DCP's own staging (what the trainer used before: a fresh pageable copy
        # at every save), two saves as above.
        import torch.distributed.checkpoint as dcp

        base = []
        for step in (4, 5):
            os.sync()
            t = time.perf_counter()
            fut = dcp.async_save(app_state(model, optim), storage_writer=checkpoint.writer(f"{tmp}/dcp-default-{step}"))
            base.append(time.perf_counter() - t)
            fut.result()
        fresh = app_state(model, optim)
        os.sync()
        sync(s.device)
        t = time.perf_counter()
        checkpoint.load_into(checkpoint.latest(tmp), fresh)
        restore_app_state(model, optim, fresh)
        sync(s.device)
        load_s = time.perf_counter() - t
    gb = nbytes / 1e9
    s.row("d", f"DCP checkpoint of {size} model + AdamW ({gb:.1f} GB, {s.device.type} tensors, local disk)",
          f"save {save_s:.1f} s ({gb / save_s:.1f} GB/s); load {load_s:.1f} s ({gb / load_s:.1f} GB/s); "
          f"async save blocks {blocking[1]:.2f} s (first save of the run {blocking[0]:.2f} s: allocates the "
          f"staging copy; done after {async_total:.1f} s); DCP's default staging blocks {base[1]:.2f} s "
          f"({base[0]:.2f} s first): {base[1] / max(blocking[1], 1e-9):.1f}× ours")


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


# ---------------------------------------------------------------- (p) pseudo-label experts
def _experts(smoke: bool) -> list[tuple[str, str, Any]]:
    """(name, kind, module factory): the paper's experts at their published sizes (random weights)."""
    import transformers as t

    from renderers.annotator_nets import ControlNetHED_Apache2, EdgeAnnotator, PiDiNet
    from renderers.hf_experts import DepthExpert, SemanticExpert, UniversalExpert

    if smoke:
        dpt = t.DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, image_size=32,
                          patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16],
                          fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5], head_in_index=-1)
        seg = t.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                                patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                                decoder_hidden_size=16, num_labels=5)
        m2f = None
    else:  # DPT-Large (ViT-L/16, 384), SegFormer-B5 (ADE 640), Mask2Former Swin-L (COCO panoptic, 133 classes)
        dpt = t.DPTConfig()
        seg = t.SegformerConfig(depths=[3, 6, 40, 3], hidden_sizes=[64, 128, 320, 512], decoder_hidden_size=768,
                                num_labels=150)
        m2f = t.Mask2FormerConfig(backbone_config=t.SwinConfig(
            image_size=384, embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12,
            out_features=["stage1", "stage2", "stage3", "stage4"]), num_labels=133, num_queries=200,
            use_pretrained_backbone=False, backbone=None)
    out = [("DPT-Large depth, 384x384", "depth", lambda: DepthExpert(t.DPTForDepthEstimation(dpt)), (32, 32) if smoke else (384, 384)),
           ("SegFormer-B5 semantic, 640x640", "segmentation",
            lambda: SemanticExpert(t.SegformerForSemanticSegmentation(seg)), (48, 48) if smoke else (640, 640)),
           ("ControlNet HED edges, 512x704", "edges", lambda: EdgeAnnotator(ControlNetHED_Apache2(), "hed"),
            (64, 64) if smoke else (512, 704)),
           ("PiDiNet edges, 512x704", "edges", lambda: EdgeAnnotator(PiDiNet(), "pidinet"), (64, 64) if smoke else (512, 704))]
    if m2f is not None:
        out.insert(2, ("Mask2Former Swin-L universal, 384x576", "segmentation",
                       lambda: UniversalExpert(t.Mask2FormerForUniversalSegmentation(m2f)), (384, 576)))
    return out


def part_pseudo_label(s: Suite) -> None:
    """Model throughput of the pseudo-label experts at the sizes their processors feed them (fp32 and
    bf16 autocast), batch 16: what `uvd pseudo-label` gets per GPU before reading and writing."""
    from renderers.labeler import Labeler

    for name, kind, make, (h, w) in _experts(s.smoke):
        if s.left() < 30:
            s.row("p", name, "skipped: budget")
            continue
        torch.manual_seed(0)
        lab = Labeler(make(), kind, device=str(s.device), batch_size=16)
        batch = 2 if s.smoke else 16
        photos = list(np.random.default_rng(0).integers(0, 256, (batch, h, w, 3), np.uint8))
        for dtype in ((torch.float32,) if s.smoke else (torch.float32, torch.bfloat16)):
            ctx = torch.autocast("cuda", dtype=dtype) if dtype != torch.float32 else nullcontext()
            with ctx, time_limit(min(s.left() - 20, 120)):
                lab.predict(photos[:2])  # warm-up
                sync(s.device)
                t = time.perf_counter()
                reps = 1 if s.smoke else 5
                for _ in range(reps):
                    lab.predict(photos)
                sync(s.device)
            rate = reps * batch / (time.perf_counter() - t)
            mem = f"; peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if s.device.type == "cuda" else ""
            s.row("p", f"{name}, batch {batch}, {'fp32' if dtype == torch.float32 else 'bf16 autocast'}",
                  f"{rate:,.1f} images/s{mem}")
        del lab
        if s.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny configs on CPU: checks the code, measures nothing")
    p.add_argument("--out", help="also write the Markdown table to this file")
    p.add_argument("--budget-s", type=float, default=450.0, help="stop starting work after this (default 450)")
    p.add_argument("--parts", default="a,c,d,b,C", help="a encode, b tokenize job, c train eager, C train compiled, d DCP, "
                                                        "p pseudo-label experts (not in the default)")
    p.add_argument("--ckpt-size", default="1b", help="model of part d (default 1b; 300m for a CPU run)")
    args = p.parse_args(argv)
    s = Suite(args.out, args.budget_s, args.smoke, args.ckpt_size)
    if s.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def watchdog() -> None:  # a hang past the budget: write what is done and leave
        time.sleep(max(0.0, s.left() + 45))
        s.row("-", "watchdog", "the budget ran out during a step; later parts did not run")
        print(s.table(), flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    parts = {"a": (lambda x: part_encode(x), 30), "c": (lambda x: part_train(x, False), 30),
             "d": (lambda x: part_checkpoint(x), 60), "b": (lambda x: part_tokenize(x), 40),
             "C": (lambda x: part_train(x, True), 60), "p": (lambda x: part_pseudo_label(x), 40)}
    for key in args.parts.split(","):
        fn, need = parts[key]
        s.part(key.lower(), fn, 1 if args.smoke else need)
    s.write()
    print("\n" + s.table(), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # do not wait for compile workers or DCP threads a timed-out step may have left
