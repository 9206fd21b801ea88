"""The single-process server: one Tagger, a bounded worker pool and uvicorn, which drains requests on SIGTERM."""
from __future__ import annotations

import uvicorn

from hashtag.runtime.tagger import Tagger
from hashtag.serve.app import create_app
from hashtag.serve.backend import LocalBackend
from hashtag.serve.config import ServeConfig


def serve_locally(config: ServeConfig, log_level: str) -> None:
    """Load the models, then serve until SIGINT/SIGTERM; requests in flight are finished first."""
    load, default = config.served_models()
    tagger = Tagger(config.bundle, provider=config.provider, threads=config.threads,
                    models=load, default_models=default)
    app = create_app(config, LocalBackend(tagger, config.pool_size))
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, server_header=False,
                timeout_graceful_shutdown=int(config.timeout_s) + 1)
