"""What every scenario needs: run settings, the claimed Redis database, the directories,
the figures measured so far, and the Koppel processes under test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.common import KOPPEL, Figure
from bench.harness.infra import RedisDb, koppel_env
from bench.harness.procs import Proc

PORTS = {"auth": 18701, "registry": 18702, "sync": 18703, "bare": 18704, "peer": 18705,
         "sync_untracked": 18706, "sync_unlogged": 18707, "sync_granian": 18708}


def url(service: str) -> str:
    return f"http://127.0.0.1:{PORTS[service]}"


@dataclass
class Ctx:
    runs: int
    seconds: float
    concurrency: int
    var: Path
    redis: RedisDb
    figures: dict[str, Figure] = field(default_factory=dict)
    world: object | None = None  # bench.harness.world.World, built on first use

    @property
    def log_dir(self) -> Path:
        path = self.var / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self, database: str, var: Path) -> dict[str, str]:
        return koppel_env(database, self.redis.url, var,
                          KOPPEL_ISSUER=url("auth"), KOPPEL_AUTH_URL=url("auth"),
                          KOPPEL_REGISTRY_URL=url("registry"), KOPPEL_SYNC_URL=url("sync"),
                          KOPPEL_FAILED_LOGIN_LIMIT_PER_ACCOUNT="1000000",
                          KOPPEL_FAILED_LOGIN_LIMIT_PER_ADDRESS="1000000")

    def serve(self, service: str, env: dict[str, str], name: str | None = None) -> Proc:
        """`koppel serve SERVICE` (the production command) on the server core; `name`
        (its port and log) for a second process of a service."""
        name = name or service
        proc = Proc(name, [KOPPEL, "serve", service, "--port", str(PORTS[name])], env,
                    self.log_dir)
        proc.wait_http(f"{url(name)}/readyz")
        return proc

    def figure(self, name: str, unit: str) -> Figure:
        return self.figures.setdefault(name, Figure(unit))
