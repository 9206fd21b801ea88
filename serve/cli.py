"""``hashtag serve``: the HTTP API and page, in this process or scaled out on Ray Serve (``--ray``)."""
from __future__ import annotations

from pathlib import Path

import click

from hashtag.runtime.errors import HashtagError
from hashtag.runtime.options import (
    bundle_option, log_level_option, models_option, provider_option, resolve_bundle, threads_option, workers_option,
)
from hashtag.serve.auth import read_api_key
from hashtag.serve.config import RayConfig, ServeConfig, default

RAY_ONLY = ("address", "replicas", "max_batch_size")


@click.command("serve")
@click.option("--host", default=default(ServeConfig, "host"), show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=default(ServeConfig, "port"), show_default=True)
@bundle_option
@models_option
@click.option("--fast", is_flag=True, help="Serve the bundle's fast model alone (by default every model is loaded: "
                                           "requests get the ensemble, or the fast model with fast=true).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True),
              default=default(ServeConfig, "max_upload_mb"), show_default=True, help="Largest request body.")
@click.option("--max-images", type=click.IntRange(min=1), default=default(ServeConfig, "max_images"),
              show_default=True, help="Most images in one multipart request.")
@click.option("--api-key-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Require 'Authorization: Bearer <key>' on /v1 with the key in this file.")
@provider_option
@threads_option
@workers_option
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=default(ServeConfig, "timeout_s"), show_default=True, help="Seconds per request.")
@click.option("--ray", "use_ray", is_flag=True, help="Run on Ray Serve: the tagger as replicas with batching.")
@click.option("--address", default=None, help="--ray: an existing Ray cluster (default: start a local one).")
@click.option("--replicas", type=click.IntRange(min=1), default=default(RayConfig, "replicas"), show_default=True,
              help="--ray: tagger replicas.")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=default(RayConfig, "max_batch_size"),
              show_default=True, help="--ray: most images per dynamic batch.")
@log_level_option
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, bundle_dir: Path | None, models_arg: str | None, fast: bool,
          max_upload_mb: float, max_images: int, api_key_file: Path | None, provider: str, threads: int | None,
          workers: int | None, timeout_s: float, use_ray: bool, address: str | None, replicas: int,
          max_batch_size: int, log_level: str) -> None:
    """Serve the HTTP API (POST /v1/tags, GET /v1/models) and the page at /. Stop it with Ctrl-C or SIGTERM."""
    if not use_ray:
        given = [p for p in RAY_ONLY if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} needs --ray")
    bundle, names = resolve_bundle(bundle_dir, models_arg)
    try:
        config = ServeConfig(bundle=bundle, models=names, fast=fast, host=host, port=port, max_upload_mb=max_upload_mb,
                             max_images=max_images, api_key=read_api_key(api_key_file) if api_key_file else None,
                             provider=provider, threads=threads, workers=workers, timeout_s=timeout_s)
        if use_ray:
            try:
                from hashtag.serve.ray_app import serve_on_ray  # Ray loads only when asked for
            except ImportError as exc:
                if (exc.name or "").startswith("hashtag."):
                    raise
                raise click.ClickException(f"--ray needs {exc.name or exc}: pip install 'hashtag[serve]'") from None
            serve_on_ray(config, RayConfig(address=address, replicas=replicas, max_batch_size=max_batch_size),
                         log_level)
        else:
            from hashtag.serve.server import serve_locally

            serve_locally(config, log_level)
    except HashtagError as exc:
        raise click.ClickException(str(exc)) from None
