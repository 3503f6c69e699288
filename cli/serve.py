"""`koppel serve` and `koppel worker`: one service or the worker, after a preflight."""

from __future__ import annotations

import gc
from enum import StrEnum
from importlib import import_module
from typing import Annotated
from urllib.parse import urlsplit

import redis
import typer

from cli.context import check_database, engine_for, load_settings
from cli.db import check_migrated
from cli.output import CliError, handle_errors, one_line
from shared.config import Settings
from shared.logging import configure_logging
from shared.metrics import serve_worker_metrics
from shared.redis_embedded import redis_running, resolved_redis_url
from shared.vault import load_keyring


class Service(StrEnum):
    AUTH = "auth"
    REGISTRY = "registry"
    SYNC = "sync"


DEFAULT_PORTS = {Service.AUTH: 8001, Service.REGISTRY: 8002, Service.SYNC: 8003}
# On SIGTERM uvicorn stops accepting and lets open requests finish for this long; it fits
# in Kubernetes' default 30 s grace period with the manifests' 5 s preStop pause.
GRACEFUL_SHUTDOWN_S = 20
# On SIGTERM the worker stops taking jobs and lets running ones finish for this long (a
# delivery's own timeout is shorter); what is still running then is cancelled and retried.
WORKER_DRAIN_S = 60


def preflight(settings: Settings) -> None:
    """Check what a process needs before it starts: key ring and a migrated database."""
    load_keyring(settings)
    with engine_for(settings) as engine:
        check_database(engine)
        check_migrated(settings, engine)


def check_redis(settings: Settings) -> None:
    """Raise CliError unless the Redis in force answers PING."""
    client = redis.Redis.from_url(resolved_redis_url(settings), socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        where = settings.redis_url or "the embedded Redis"
        raise CliError(f"Redis at {where} is unreachable: {one_line(str(exc))}") from None
    finally:
        client.close()


def default_port(settings: Settings, service: Service) -> int:
    """The port of the service's configured URL, or its default (8001, 8002, 8003)."""
    url = {
        Service.AUTH: settings.auth_url,
        Service.REGISTRY: settings.registry_url,
        Service.SYNC: settings.sync_url,
    }[service]
    try:
        port = urlsplit(url).port
    except ValueError:
        port = None
    return port or DEFAULT_PORTS[service]


def app_factory(service: Service) -> str:
    """The uvicorn import path of the service's app factory."""
    return f"services.{service.value}.app:create_app"


def freeze_startup() -> None:
    """Freeze what start-up made out of the garbage collector's generations. It lives as
    long as the process (~170,000 objects: modules, models, mappers, the app's routes),
    and each full collection that a stream of requests or deliveries sets off would walk
    it again (50 to 75 ms each on the bench machine; docs/performance.md)."""
    gc.collect()
    gc.freeze()


def built_app(service: Service) -> object:
    """The service's app, built before uvicorn starts so that `freeze_startup` covers
    it (its lifespan still runs under uvicorn)."""
    module, _, factory = app_factory(service).partition(":")
    app = getattr(import_module(module), factory)()
    freeze_startup()
    return app


@handle_errors
def serve(
    service: Annotated[Service, typer.Argument(help="Which service to run.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port; default: the one in the service's URL setting.")
    ] = None,
) -> None:
    """Run one service (auth, registry or sync) with uvicorn.

    X-Forwarded-For and X-Forwarded-Proto are trusted only from KOPPEL_TRUSTED_PROXIES
    (the app applies them, shared/proxies.py); uvicorn's own handling is off."""
    settings = _checked_settings()
    import uvicorn

    uvicorn.run(
        built_app(service),  # type: ignore[arg-type]
        host=host,
        port=port or default_port(settings, service),
        proxy_headers=False,  # uvicorn would trust 127.0.0.1 (FORWARDED_ALLOW_IPS)
        log_level=settings.log_level.lower(),
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


@handle_errors
def worker(
    burst: Annotated[bool, typer.Option(help="Run the queued jobs, then exit.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this process's Prometheus metrics on this port (0.0.0.0)."),
    ] = None,
) -> None:
    """Run the arq worker: outbox relay, webhook delivery and scheduled jobs.

    On SIGTERM arq stops taking jobs and waits for the running ones; a delivery it cannot
    finish stays leased in the database and is sent again by the next sweep."""
    settings = _checked_settings()
    from worker.main import build_worker

    with redis_running(settings):
        check_redis(settings)
        # Before arq starts, so that its own start-up lines are JSON too.
        configure_logging(settings, "worker")
        if metrics_port is not None:
            serve_worker_metrics(metrics_port)
        freeze_startup()
        build_worker(settings, burst=burst, job_completion_wait=WORKER_DRAIN_S).run()


def _checked_settings() -> Settings:
    settings = load_settings()
    preflight(settings)
    return settings
