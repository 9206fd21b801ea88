"""The server's settings, validated once; the CLI's defaults are read from these dataclasses."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hashtag.runtime.contract import SERVER_TIMEOUT_S
from hashtag.runtime.errors import ConfigError, ModelSelectionError, ProviderError
from hashtag.runtime.manifest import load_bundle
from hashtag.runtime.prediction import refuse_fast_with_names
from hashtag.runtime.providers import check_provider, usable_cpus

MB = 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """One server: where it listens, what it serves and the bounds it keeps."""

    bundle: Path
    models: tuple[str, ...] | None = None  # served models (default: every model in the bundle)
    fast: bool = False  # serve the bundle's fast model alone
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 20.0  # whole request body
    max_images: int = 32  # images in one multipart request
    api_key: str | None = field(default=None, repr=False)
    provider: str = "auto"
    threads: int | None = None  # intra-op threads per model (default: ONNX Runtime's)
    workers: int | None = None  # requests tagged at the same time (default: one per CPU)
    timeout_s: float = SERVER_TIMEOUT_S  # per request, from upload received to answer

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0-65535, got {self.port}")
        if not self.max_upload_mb > 0:
            raise ConfigError(f"max upload must be positive, got {self.max_upload_mb} MB")
        if self.max_images < 1:
            raise ConfigError(f"max images must be at least 1, got {self.max_images}")
        try:
            check_provider(self.provider)
        except ProviderError as exc:
            raise ConfigError(str(exc)) from None
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout must be positive, got {self.timeout_s} s")
        if self.api_key is not None and not self.api_key:
            raise ConfigError("the API key is empty")
        try:
            refuse_fast_with_names(self.fast, self.models)
        except ModelSelectionError as exc:
            raise ConfigError(str(exc)) from None

    def served_models(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(the models to load, those a request runs by default): the fast one alone; the named ones; or every
        model, requests getting the ensemble by default and the fast model with ``fast=true``."""
        bundle = load_bundle(self.bundle)
        if self.fast:
            return (bundle.fast_name,), (bundle.fast_name,)
        for name in self.models or ():
            bundle.model(name)
        if self.models:
            return self.models, self.models
        return tuple(m.name for m in bundle.models), bundle.ensemble_names

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def pool_size(self) -> int:
        return self.workers or usable_cpus()  # ONNX Runtime releases the GIL


@dataclass(frozen=True)
class RayConfig:
    """Scale-out on Ray Serve: the cluster, the tagger's replicas and their dynamic batching."""

    address: str | None = None  # an existing cluster ('auto', 'ray://host:10001', host:6379); None starts one
    replicas: int = 2
    max_batch_size: int = 8
    batch_wait_s: float = 0.005  # how long a replica waits to fill a batch
    replica_cpus: float = 1.0  # Ray CPUs reserved per tagger replica
    object_store_mb: int = 200  # object store of a local cluster started for the server

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"replicas must be at least 1, got {self.replicas}")
        if self.max_batch_size < 1:
            raise ConfigError(f"max batch size must be at least 1, got {self.max_batch_size}")
        if self.batch_wait_s < 0:
            raise ConfigError(f"batch wait must not be negative, got {self.batch_wait_s}")
        if self.replica_cpus < 0:
            raise ConfigError(f"replica CPUs must not be negative, got {self.replica_cpus}")
        if self.object_store_mb < 80:
            raise ConfigError(f"Ray's object store needs at least 80 MB, got {self.object_store_mb}")


def default(cls: type, name: str) -> Any:
    """A field's default, so each default is written once (in the dataclass) and the CLI shows it."""
    for f in fields(cls):
        if f.name == name:
            return f.default
    raise KeyError(name)
