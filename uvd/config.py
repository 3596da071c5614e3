"""The typed build config, loaded from YAML with clear errors (unknown keys, wrong types, missing paths)."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from uvd.errors import ConfigError


class Strict(BaseModel):
    # Unknown keys are an error: a typo in a config must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Fields that change how a build runs, never the bytes it writes (concurrency, timeouts,
    # retries, user agent): left out of the unit recipe, so changing them rebuilds nothing.
    operational_keys: ClassVar[frozenset[str]] = frozenset()
    # Fields each unit's payload already names (e.g. LAION's metadata file list: a unit carries
    # its own file): left out of the dataset's recipe, so appending inputs builds only new units.
    payload_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        unknown = (cls.operational_keys | cls.payload_keys) - set(cls.model_fields)
        if unknown:  # a renamed field must not silently become part of the recipe again
            raise TypeError(f"{cls.__name__}: operational/payload keys {sorted(unknown)} are no fields")


def recipe_dump(model: BaseModel) -> Any:
    """`model` as JSON data without its operational and payload keys, nested models included:
    what the unit recipe hashes."""
    skip = getattr(model, "operational_keys", frozenset()) | getattr(model, "payload_keys", frozenset())
    return {name: _recipe_value(getattr(model, name), model.model_dump(mode="json", include={name})[name])
            for name in type(model).model_fields if name not in skip}


def _recipe_value(value: Any, dumped: Any) -> Any:
    if isinstance(value, BaseModel):
        return recipe_dump(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, BaseModel) for v in value):
        return [_recipe_value(v, d) for v, d in zip(value, dumped)]
    if isinstance(value, dict) and any(isinstance(v, BaseModel) for v in value.values()):
        return {k: _recipe_value(v, dumped[k]) for k, v in value.items()}
    return dumped


class ImageSpec(Strict):
    size: int = Field(256, ge=8)
    resize: Literal["center_crop", "squash", "pad"] = "center_crop"
    jpeg_quality: int = Field(95, ge=1, le=100)
    # Decompression-bomb guard: a header claiming more pixels than this is refused before decoding.
    max_pixels: int = Field(100_000_000, ge=1)


class DatasetConfig(Strict):
    name: str = ""  # directory under sentences/ and the shards' `source` column; defaults to `source`
    source: str
    source_args: dict[str, Any] = Field(default_factory=dict)
    builder: str = "single"
    builder_args: dict[str, Any] = Field(default_factory=dict)
    items_per_unit: int = Field(256, ge=1)

    @property
    def key(self) -> str:
        return self.name or self.source


class ActorPoolRun(Strict):
    """Resources of a GPU stage (tokenize, pseudo-label) run as a Ray Data actor pool (docs/cluster.md)."""
    operational_keys = frozenset({"num_gpus", "cpus_per_actor", "min_actors", "max_actors", "batch_size"})
    num_gpus: float = Field(1, ge=0)  # GPUs each actor reserves when the cluster has GPUs (0: CPU actors)
    cpus_per_actor: float = Field(0, ge=0)  # 0 = 1 beside a GPU; on CPU-only clusters all CPUs / actors
    min_actors: int = Field(0, ge=0)  # 0 = one per GPU of the cluster (1 when it has none)
    max_actors: int = Field(0, ge=0)  # 0 = min_actors (a fixed pool); more lets Ray Data grow the pool
    batch_size: int = Field(64, ge=1)  # images per forward pass


class RunConfig(Strict):
    operational_keys = frozenset({"workers", "max_in_flight", "max_retries", "unit_timeout_s", "shared_fs",
                                  "cpus_per_unit", "memory_per_unit_mb", "tokenize"})
    workers: int = Field(0, ge=0)  # CPUs for a local Ray; 0 = all. Ignored when joining RAY_ADDRESS
    max_in_flight: int = Field(0, ge=0)  # units submitted at once; 0 = 2 × cluster CPUs / cpus_per_unit
    max_retries: int = Field(2, ge=0)  # Ray retries of a unit whose task failed (crash, lost node)
    unit_timeout_s: float = Field(3600, gt=0)
    # Local output/input paths are one filesystem every node mounts; otherwise a build on a cluster of
    # several nodes refuses them at plan time (uvd.cluster_checks).
    shared_fs: bool = False
    cpus_per_unit: float = Field(1, gt=0)  # Ray CPUs a unit task reserves: a node runs CPUs/this at once
    memory_per_unit_mb: int = Field(0, ge=0)  # Ray memory a unit task reserves (0: none, Ray's default)
    tokenize: ActorPoolRun = Field(default_factory=ActorPoolRun)


class BuildConfig(Strict):
    # `row_group_bytes` sizes the Parquet row groups: same rows, same sentences, other framing.
    operational_keys = frozenset({"out", "run", "row_group_bytes"})
    out: str = "out"
    seed: int = 0
    image: ImageSpec = Field(default_factory=ImageSpec)
    max_images_per_sentence: int = Field(16, ge=1)
    row_group_bytes: int = Field(32 << 20, ge=1 << 16)
    run: RunConfig = Field(default_factory=RunConfig)
    datasets: list[DatasetConfig]

    @field_validator("datasets")
    @classmethod
    def _unique_names(cls, datasets: list[DatasetConfig]) -> list[DatasetConfig]:
        keys = [d.key for d in datasets]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"dataset names must be unique; repeated: {dupes} (set `name:`)")
        return datasets

    def dataset(self, key: str) -> DatasetConfig:
        for d in self.datasets:
            if d.key == key:
                return d
        raise KeyError(key)

    def hash(self) -> str:
        """Hash of the whole config but `out` and `run`: names one config (a worker's cache key)."""
        body = self.model_dump(mode="json", exclude={"out", "run"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def format_validation_error(err: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if e["type"] == "value_error":  # our validators' own words, without pydantic's "Value error, "
            msg = str(e.get("ctx", {}).get("error", msg.removeprefix("Value error, ")))
        lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
    return "\n".join(lines)


def parse_model(model: type[BaseModel], data: Any, where: str) -> Any:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A config file as a mapping, `${VAR:-default}` expanded; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(expand_env(path.read_text()))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BuildConfig:
    path = Path(path)
    data = resolve_relative_paths(read_yaml_mapping(path), path.parent)
    data.update(overrides or {})
    return parse_model(BuildConfig, data, str(path))


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str) -> str:
    """`${VAR}` and `${VAR:-default}` in a config: one file serves real data locations (set the
    variables) and the bundled samples (the defaults)."""
    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value is None and m.group(2) is None:
            raise ConfigError(f"config refers to ${{{m.group(1)}}}, which is not set and has no default")
        return value if value is not None else m.group(2)

    return _ENV.sub(sub, text)


def resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths in `source_args` that start with ./ or ../ are relative to the config file."""
    for ds in data.get("datasets") or []:
        args = ds.get("source_args") if isinstance(ds, dict) else None
        if isinstance(args, dict):
            for k, v in args.items():
                if isinstance(v, str) and (v.startswith("./") or v.startswith("../")):
                    args[k] = str((base / v).resolve())
                elif isinstance(v, list):  # a list of paths (e.g. coco `annotations`)
                    args[k] = [str((base / p).resolve()) if isinstance(p, str) and p.startswith(("./", "../")) else p for p in v]
    return data


def require_path(value: str, what: str) -> str:
    """For source options: a local path that must exist (URLs with a scheme are left to fsspec)."""
    if "://" not in value and not Path(value).exists():
        raise ConfigError(f"{what}: path does not exist: {value}")
    return value
