"""The worker runs every job named in shared/jobs.py, each from its owner's `jobs` module."""

from __future__ import annotations

from shared import jobs
from shared.config import Settings
from worker.main import build_worker

OWNERS = {
    jobs.EVENTS_RELAY: "services.sync.jobs",
    jobs.WEBHOOKS_DELIVER: "services.sync.jobs",
    jobs.WEBHOOKS_SWEEP: "services.sync.jobs",
    jobs.MAINTENANCE_PURGE_EXPIRED: "services.auth.jobs",
    jobs.CONNECTIONS_RECORD_LAST_USED: "services.registry.jobs",
    jobs.CONNECTIONS_EXPIRE: "services.registry.jobs",
    jobs.ACCESS_REVIEWS_COMPLETE: "services.registry.jobs",
    jobs.AUDIT_CHECKPOINT: "services.registry.jobs",
    jobs.IDEMPOTENCY_PURGE_EXPIRED: "services.registry.jobs",
    jobs.DATA_ACCESS_FLUSH: "services.sync.jobs",
    jobs.DATA_ACCESS_PURGE: "services.sync.jobs",
}


def test_every_job_runs_from_its_owners_jobs_module(settings: Settings) -> None:
    worker = build_worker(settings, burst=True)
    owners = {name: function.coroutine.__wrapped__.__module__
              for name, function in worker.functions.items()}
    assert owners == OWNERS
