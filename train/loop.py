"""The training loop: one process per device (torchrun), DDP or FSDP, resumable to the step.

AdamW (β 0.9/0.95), linear warmup then cosine to `min_lr`, weight decay on matrices only,
gradient clipping and accumulation, bf16 autocast on GPU. Logs loss, tokens/s and MFU to
stdout and <out>/log.jsonl.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from train import checkpoint
from train.config import Config
from train.model import ModelArgs, Transformer, loss_fn
from train.run_log import RunLog
from train.stream import TokenLoader
from uvd import storage
from uvd.progress import progress as progress_bar

log = logging.getLogger(__name__)

FSDP_FROM_PARAMS = 1_000_000_000
# Dense bf16 peak per device, for MFU.
GPU_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12,
                  "L40S": 362e12, "A10G": 125e12, "4090": 165e12, "3090": 71e12}


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_type: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    if dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Dist()


def teardown_distributed(finished: bool = True) -> None:
    """Leave the process group together: a rank that tears gloo down while another still talks
    to it can abort at exit ("terminate called without an active exception"). After an error the
    other ranks may never arrive, so then no barrier."""
    if dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def lr_at(step: int, cfg: Config) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine to min_lr."""
    o, total = cfg.optim, cfg.train.steps
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    span = max(1, total - o.warmup_steps)
    progress = min(1.0, (step - o.warmup_steps) / span)
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    # Decay matrices (projections, embeddings), not norm gains: decaying gains only shrinks them.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # On GPU one fused kernel per step (as torchtitan's default, FSDP2's DTensors included); on CPU
    # the default implementation, whose results the CPU tests pin.
    fused = all(p.is_cuda for p in decay + no_decay) or None
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps, fused=fused)


def pick_device(cfg: Config, d: Dist) -> torch.device:
    want = cfg.train.device
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def peak_flops(cfg: Config, device: torch.device) -> float:
    if cfg.train.peak_flops:
        return cfg.train.peak_flops
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_PEAK_FLOPS.items():
            if key in name:
                return value
        return float("nan")
    return measured_cpu_flops()


def measured_cpu_flops(n: int = 512, trials: int = 7) -> float:
    """What fp32 matmul reaches on this CPU: a practical peak for MFU when no GPU is lent.

    The best of several short trials: on a shared machine most trials lose the core for a while.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(trials):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


def wrap(model: Transformer, cfg: Config, d: Dist, device: torch.device) -> nn.Module:
    mode = cfg.train.parallel
    if mode == "auto":
        mode = "fsdp" if model.num_params() >= FSDP_FROM_PARAMS and d.world > 1 else "ddp"
    if d.world == 1:
        return model
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.model.layers:
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _rng_state() -> dict[str, Any]:
    # Byte lists, not tensors: tensors do not survive all_gather_object's pickling here.
    state: dict[str, Any] = {"torch": torch.get_rng_state().tolist(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _gather(obj: Any, d: Dist) -> list[Any]:
    if d.world == 1:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def app_state(model: nn.Module, optim: torch.optim.Optimizer) -> dict[str, Any]:
    """Model and optimizer state keyed by parameter names, each rank holding only its own shards
    (DTensors under FSDP): what DCP writes and reads, so nothing is gathered on one rank."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    ms, os_ = get_state_dict(model, optim)  # also creates the optimizer's state before its first step
    return {"model": ms, "optim": os_}


def restore_app_state(model: nn.Module, optim: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    from torch.distributed.checkpoint.state_dict import set_state_dict

    set_state_dict(model, optim, model_state_dict=state["model"], optim_state_dict=state["optim"])


def accumulation(cfg: Config, world: int, saved_global_batch: int | None = None) -> tuple[int, int]:
    """(gradient-accumulation steps, global batch in rows). A resumed run keeps the global batch it
    was saved with, whatever its world size: accumulation makes up the difference."""
    per_pass = cfg.train.batch_size * world
    want = saved_global_batch or cfg.train.global_batch or cfg.train.batch_size * cfg.train.grad_accum * world
    if cfg.train.global_batch and saved_global_batch and cfg.train.global_batch != saved_global_batch:
        raise ValueError(f"train.global_batch {cfg.train.global_batch} differs from the checkpoint's {saved_global_batch}")
    if want % per_pass:
        raise ValueError(f"global batch {want} rows is not a multiple of batch_size × ranks = {per_pass}")
    return want // per_pass, want


def train(cfg: Config, stop_after: int | None = None) -> list[dict[str, Any]]:
    """Train to cfg.train.steps (or stop after `stop_after` steps of this run, checkpointing).

    Resumes from the run's checkpoint (checkpoint.latest: the pointer, else the newest complete
    folder) when there is one; with `train.restart` the old checkpoints, log and config are moved
    aside first and the run starts at step 0. Returns the per-step records (loss after all-reduce,
    lr, tokens/s, MFU) of the steps this call ran.
    """
    want_cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())
    d = setup_distributed("cuda" if want_cuda else "cpu")
    device = pick_device(cfg, d)
    use_bf16 = cfg.train.dtype == "bf16" or (cfg.train.dtype == "auto" and device.type == "cuda")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    random.seed(cfg.train.seed + d.rank)

    if cfg.train.restart:
        if d.main:
            aside = checkpoint.move_aside(cfg.train.out)
            if aside:
                log.info(f"train: --restart: the previous checkpoints, log and config moved to {aside}")
        if dist.is_initialized():
            dist.barrier()  # no rank looks for a checkpoint before they are gone

    model = Transformer(ModelArgs.from_config(cfg.model)).to(device)
    flops_per_token = model.flops_per_token(cfg.data.seq_len)
    n_params = model.num_params()
    wrapped = wrap(model, cfg, d, device)
    optim = make_optimizer(wrapped, cfg)
    loader = TokenLoader(cfg.data, cfg.train.seed, d.rank, d.world, cfg.train.batch_size)
    ckpt = checkpoint.Checkpointer(cfg.train.out, cfg.train.keep_checkpoints, cfg.train.async_checkpoint)

    step = 0
    resume = checkpoint.latest(cfg.train.out)
    saved = checkpoint.read_train_state(resume) if resume else None
    grad_accum, global_batch = accumulation(cfg, d.world, saved["global_batch"] if saved else None)
    if resume:
        state = app_state(wrapped, optim)
        checkpoint.load_into(resume, state)  # each rank reads only its own shards
        restore_app_state(wrapped, optim, state)
        step = int(saved["step"])
        loader.load_global_state(saved["data"])  # re-split when the ranks or workers changed
        if len(saved["rng"]) == d.world:
            _set_rng_state(saved["rng"][d.rank])
        if d.main:
            log.info(f"train: resumed from {resume} at step {step} (saved by {saved['world']} rank(s), now {d.world}; "
                  f"{grad_accum} micro-batch(es) per step)")
    logger = RunLog(cfg.train.out, d.main, resumed_at=step)
    compile_ = cfg.train.compile is True or (cfg.train.compile == "auto" and device.type == "cuda")
    if d.main and not resume:
        storage.write_json(storage.join(cfg.train.out, "config.json"), cfg.model_dump(mode="json"))
        log.info(f"train: {n_params / 1e6:.2f}M parameters, {d.world} rank(s), device {device.type}, "
                 f"{'bf16' if use_bf16 else 'fp32'}, {'compiled' if compile_ else 'eager'}")
    peak = peak_flops(cfg, device)
    compiled = torch.compile(wrapped) if compile_ else wrapped

    records: list[dict[str, Any]] = []
    tokens_per_step = global_batch * cfg.data.seq_len
    last_step = cfg.train.steps if stop_after is None else min(cfg.train.steps, step + stop_after)
    bar = progress_bar(last_step - step, "train", "step") if d.main else None  # items: tokens
    finished = False
    try:
        t_last = time.perf_counter()
        while step < last_step:
            lr = lr_at(step, cfg)
            for group in optim.param_groups:
                group["lr"] = lr
            total = torch.zeros((), device=device)
            for micro in range(grad_accum):
                batch = next(loader).to(device, non_blocking=True).long()
                x, y = batch[:, :-1], batch[:, 1:]
                sync = micro == grad_accum - 1
                if hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2: reduce-scatter only on the last
                    wrapped.set_requires_gradient_sync(sync)
                    ctx = contextlib.nullcontext()
                else:  # DDP (no_sync) or a single process (nothing to sync)
                    ctx = wrapped.no_sync() if not sync and hasattr(wrapped, "no_sync") else contextlib.nullcontext()
                amp = torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
                # One `with` for forward and backward: DDP's no_sync() is a one-shot context manager
                # (entering it twice raised on every DDP run with accumulation) and must span both.
                with ctx:
                    with amp:
                        loss = loss_fn(compiled(x), y, cfg.data.pad_id) / grad_accum
                    loss.backward()
                total += loss.detach()
            grad_norm = None
            if cfg.optim.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(wrapped.parameters(), cfg.optim.grad_clip)
            optim.step()
            optim.zero_grad(set_to_none=True)
            step += 1
            if d.world > 1:
                dist.all_reduce(total, op=dist.ReduceOp.AVG)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            now = time.perf_counter()
            tps = tokens_per_step / (now - t_last)
            t_last = now
            record = {"step": step, "loss": float(total), "lr": lr, "tokens_per_s": tps,
                      "mfu": flops_per_token * tps / (peak * d.world)}
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
            records.append(record)
            if bar is not None:
                bar.update(1, items=tokens_per_step)
            if step % cfg.train.log_every == 0 or step == last_step:
                logger.log(record)
            if step % cfg.train.ckpt_every == 0 or step == last_step:
                save_checkpoint(cfg, d, wrapped, optim, loader, step, ckpt, global_batch)
                logger.flush()
                t_last = time.perf_counter()  # saving is not training time
        finished = True
    finally:
        if finished:
            ckpt.close()  # the last save committed, its staging copy freed
        else:  # an async save that finished is recorded even so: never lose a checkpoint to a later error
            ckpt.close_after_error()
        with contextlib.nullcontext() if finished else contextlib.suppress(Exception):
            logger.flush()  # after an error, never instead of it
        if bar is not None:
            bar.close()
    if dist.is_initialized():
        dist.barrier()
    return records


def save_checkpoint(cfg: Config, d: Dist, model: nn.Module, optim: torch.optim.Optimizer,
                    loader: TokenLoader, step: int, ckpt: checkpoint.Checkpointer, global_batch: int) -> None:
    data = _gather(checkpoint.plain(loader.state_dict()), d)
    rng = _gather(checkpoint.plain(_rng_state()), d)
    train_state = None
    if d.main:
        train_state = {"step": step, "config": cfg.model_dump(mode="json"), "world": d.world,
                       "global_batch": global_batch, "scheduler": {"kind": "warmup_cosine", "step": step},
                       "data": data, "rng": rng}
    url = ckpt.save(step, app_state(model, optim), train_state)  # every rank writes its own shards
    if d.main:
        log.info(f"train: checkpoint {url} ({ckpt.last_blocking_s:.2f} s blocking)")


def main(argv: list[str] | None = None) -> int:
    import argparse

    from train.config import load_train_config, parse_overrides
    from uvd.errors import ConfigError

    p = argparse.ArgumentParser(prog="uvd train", description="Train a LLaMA-style model on token shards "
                                "(one process per device: `torchrun --nproc-per-node N -m train CONFIG`).")
    p.add_argument("config", help="training config (YAML), e.g. configs/train_tiny.yaml")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config values, e.g. train.steps=200 data.tokens=[out/demo/build]")
    p.add_argument("--stop-after", type=int, help="run at most this many steps now (checkpoint, resume later)")
    p.add_argument("--restart", action="store_true",
                   help="start at step 0 although the run folder has checkpoints: they, log.jsonl and config.json "
                        "are moved to <out>/before-restart-<UTC time>/ first (nothing is deleted)")
    args = p.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        if args.restart:
            overrides["train.restart"] = True
        cfg = load_train_config(args.config, overrides)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    finished = False
    try:
        train(cfg, args.stop_after)
        finished = True
    except (FileNotFoundError, ValueError) as err:
        print(f"uvd train: {err}", file=sys.stderr)
        return 1
    finally:
        teardown_distributed(finished)
    return 0
