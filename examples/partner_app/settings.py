"""What the example app needs to know, from its environment (PARTNER_* variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    issuer: str  # Koppel's auth service: everything else is found through discovery
    api_url: str  # Koppel's sync service (the data API and webhook endpoints)
    client_id: str
    client_secret: str
    base_url: str  # where this app is reachable: /callback and /webhooks hang off it
    data_dir: Path  # the encrypted token store and the synced employees live here
    scope: str = "company.info.read employee.info.read offline_access"
    poll_seconds: float = 30.0  # the change feed is also read when a webhook says so

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/callback"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/webhooks"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            issuer=env.get("PARTNER_KOPPEL_ISSUER", "http://127.0.0.1:8001"),
            api_url=env.get("PARTNER_KOPPEL_API", "http://127.0.0.1:8003"),
            client_id=env["PARTNER_CLIENT_ID"],
            client_secret=env["PARTNER_CLIENT_SECRET"],
            base_url=env.get("PARTNER_BASE_URL", "http://127.0.0.1:8500"),
            data_dir=Path(env.get("PARTNER_DATA_DIR", "partner-data")),
        )
