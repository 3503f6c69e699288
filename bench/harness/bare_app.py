"""The framework ceiling: a bare FastAPI endpoint returning a small JSON, served with
the uvicorn settings of `koppel serve` (cli/serve.py).

    python -m bench.harness.bare_app PORT
"""

from __future__ import annotations

import sys

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/employees/{employee_id}")
    async def employee(employee_id: str) -> dict[str, str]:
        """A small JSON, about the size of the smallest Koppel answers."""
        return {"id": employee_id, "first_name": "Anna", "last_name": "de Vries"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    import uvicorn

    from cli.serve import GRACEFUL_SHUTDOWN_S

    uvicorn.run("bench.harness.bare_app:create_app", factory=True, host="127.0.0.1",
                port=int(sys.argv[1]), proxy_headers=True, log_level="warning",
                server_header=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)


if __name__ == "__main__":
    main()
