"""`/healthz` (the process answers) and `/readyz` (database and Redis reachable)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from shared.policy.dependency import declare

READY_TIMEOUT_S = 2.0


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"], dependencies=[Depends(declare("health"))])

    @router.get("/healthz", operation_id="health.live")
    async def healthz() -> dict[str, str]:
        """Liveness: the process is up and serving."""
        return {"status": "ok"}

    @router.get("/readyz", operation_id="health.ready",
                responses={503: {"description": "a dependency is unreachable"}})
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the database and Redis answer."""
        runtime = request.app.state.runtime
        checks = {"database": runtime.check_database, "redis": runtime.check_redis}
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), READY_TIMEOUT_S)
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                results[name] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": results},
            status_code=200 if ready else 503,
        )

    return router
