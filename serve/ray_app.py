"""Scale-out on Ray Serve: the same FastAPI app as the ingress, the tagger as N replicas with dynamic batching.

Each replica loads the bundle from ``ServeConfig.bundle``: on a cluster, that path must exist on every
node (install hashtag the same way everywhere, or point $HASHTAG_MODELS at the same folder).
"""
from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import signal
import threading
from pathlib import Path
from typing import Any, Sequence

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from hashtag.runtime.errors import ConfigError
from hashtag.runtime.options import parse_model_names
from hashtag.runtime.prediction import Options
from hashtag.runtime.providers import usable_cpus
from hashtag.runtime.settings import settings
from hashtag.runtime.tagger import Tagger
from hashtag.serve.app import create_app
from hashtag.serve.auth import read_api_key
from hashtag.serve.catalog import models_document
from hashtag.serve.config import MB, RayConfig, ServeConfig
from hashtag.serve.tagging import Record, Upload, tag_uploads

APP_NAME = "hashtag"


@serve.deployment(name="tagger")
class TaggerDeployment:
    """One replica: a Tagger that answers single images, grouped by Ray Serve into dynamic batches."""

    def __init__(self, config: ServeConfig, ray_config: RayConfig) -> None:
        load, default = config.served_models()
        self.tagger = Tagger(config.bundle, provider=config.provider, threads=config.threads, models=load,
                             default_models=default)
        self.catalog = models_document(self.tagger)
        self.tag.set_max_batch_size(ray_config.max_batch_size)
        self.tag.set_batch_wait_timeout_s(ray_config.batch_wait_s)

    @serve.batch
    async def tag(self, items: list[tuple[Upload, Options]]) -> list[Record]:
        """Images of several requests, each with its own options, in one pass over the models."""
        return await asyncio.to_thread(tag_uploads, self.tagger, items)

    def info(self) -> dict[str, Any]:
        return self.catalog


class RayBackend:
    """The app's backend inside the ingress replica: each image is one call to the tagger deployment."""

    def __init__(self, tagger: DeploymentHandle) -> None:
        self.tagger = tagger
        self._catalog: dict[str, Any] | None = None
        self.in_flight = 0  # this gateway replica's requests waiting for the tagger (one event loop: no lock)

    async def tag(self, uploads: Sequence[Upload], options: Options) -> list[Record]:
        self.in_flight += 1
        try:
            return list(await asyncio.gather(*(self.tagger.tag.remote((u, options)) for u in uploads)))
        finally:
            self.in_flight -= 1

    async def catalog(self) -> dict[str, Any]:
        if self._catalog is None:
            self._catalog = await self.tagger.info.remote()
        return self._catalog

    async def close(self) -> None:
        """Nothing to release here: Ray Serve drains and stops the replicas."""


@serve.deployment(name="gateway", ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Gateway:
    """The HTTP ingress: ``create_app`` over the tagger deployment, built inside the replica."""

    def __init__(self, tagger: DeploymentHandle, config: ServeConfig) -> None:
        self.config = config
        self.backend = RayBackend(tagger)

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.config, self.backend)


def application(config: ServeConfig, ray_config: RayConfig) -> Any:
    """The Ray Serve application: gateway -> tagger (N replicas, CPUs reserved each, batches queued)."""
    tagger = TaggerDeployment.options(
        num_replicas=ray_config.replicas,
        max_ongoing_requests=2 * ray_config.max_batch_size,  # one batch running, the next one filling
        ray_actor_options={"num_cpus": ray_config.replica_cpus},
        graceful_shutdown_timeout_s=config.timeout_s,
    ).bind(dataclasses.replace(config, api_key=None), ray_config)  # only the gateway checks (and holds) the key
    return Gateway.options(
        max_ongoing_requests=2 * ray_config.replicas * ray_config.max_batch_size,  # enough to fill every batch
        graceful_shutdown_timeout_s=config.timeout_s,
    ).bind(tagger, config)


BUILDER_ARGS = ("bundle", "models", "fast", "api_key_file", "max_upload_mb", "max_images", "timeout_s", "replicas",
                "max_batch_size")


def configs_from_args(args: dict[str, Any]) -> tuple[ServeConfig, RayConfig]:
    """The settings from a Serve config's ``args`` (strings or numbers; every one optional)."""
    unknown = sorted(set(args) - set(BUILDER_ARGS))
    if unknown:
        raise ConfigError(f"unknown argument {unknown[0]!r} (known: {', '.join(BUILDER_ARGS)})")
    numbers = {"max_upload_mb": float, "max_images": int, "timeout_s": float}
    config = ServeConfig(bundle=Path(args.get("bundle") or settings().bundle),
                         models=parse_model_names(args.get("models")),
                         fast=str(args.get("fast", "")).lower() in ("1", "true", "yes"),
                         api_key=read_api_key(Path(args["api_key_file"])) if args.get("api_key_file") else None,
                         **{k: cast(args[k]) for k, cast in numbers.items() if k in args})
    return config, RayConfig(**{k: int(args[k]) for k in ("replicas", "max_batch_size") if k in args})


def app_builder(args: dict[str, Any]) -> Any:
    """For ``serve run`` and KubeRay's RayService: ``import_path: hashtag.serve.ray_app:app_builder``.

    Host and port come from Serve's own ``http_options`` there; ``args`` as in ``configs_from_args``.
    """
    return application(*configs_from_args(args))


class _StopSignal:
    """Set by SIGINT or SIGTERM; installed right after ``ray.init``, whose own handler exits at once."""

    def __init__(self) -> None:
        self.received = threading.Event()
        self.signum: int = signal.SIGTERM
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum
        self.received.set()


def serve_on_ray(config: ServeConfig, ray_config: RayConfig, log_level: str) -> None:
    """Deploy on the cluster at ``ray_config.address`` (or a local one started here) until SIGINT/SIGTERM.

    On a signal the app is deleted first, which lets every replica finish its requests in flight
    (up to ``graceful_shutdown_timeout_s``), and only then is Serve (on a local cluster) shut down.
    """
    config.served_models()  # fail fast here (bundle, model names), not in every replica
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray_config.address is None:
        ray.init(num_cpus=max(usable_cpus(), math.ceil(ray_config.replicas * ray_config.replica_cpus)),
                 include_dashboard=False, object_store_memory=ray_config.object_store_mb * MB,
                 logging_level=log_level.upper())
    else:
        ray.init(address=ray_config.address, logging_level=log_level.upper())
    stop = _StopSignal()
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(application(config, ray_config), name=APP_NAME, route_prefix="/")
        print(f"hashtag serve: Ray Serve app {APP_NAME!r} on http://{config.host}:{config.port} "
              f"({ray_config.replicas} tagger replica(s))", flush=True)
        stop.received.wait()
    finally:
        serve.delete(APP_NAME)  # blocks while the replicas drain; the proxy keeps relaying their answers
        if ray_config.address is None:
            serve.shutdown()
        ray.shutdown()
    signal.signal(stop.signum, signal.SIG_DFL)
    signal.raise_signal(stop.signum)  # exit by the signal once drained, as the single process (uvicorn) does
