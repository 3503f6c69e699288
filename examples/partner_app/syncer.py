"""Keeping a copy of the employees of every connection: a full read when a connection is
new, then the change feed (`GET /v1/changes`) from where it was left. A webhook wakes the
syncer early; without webhooks it still polls every `poll_seconds`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from examples.partner_app.koppel import ConnectionGone, Koppel
from examples.partner_app.store import Store

log = logging.getLogger("partner_app")
EMPLOYEE_EVENTS = {"employee.created", "employee.updated"}


class Syncer:
    def __init__(self, koppel: Koppel, store: Store, poll_seconds: float) -> None:
        self.koppel = koppel
        self.store = store
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syncer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(30)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            for connection_id in self.store.connections():
                if self._stop.is_set():
                    break
                try:
                    self.sync(connection_id)
                except ConnectionGone:
                    log.info("connection %s ended; its data is removed", connection_id)
                    self.store.forget(connection_id)
                except Exception:  # a network error: try again at the next round
                    log.exception("syncing connection %s failed", connection_id)
            self._wake.wait(self.poll_seconds)

    def sync(self, connection_id: str) -> None:
        cursor = self.store.cursor(connection_id)
        if cursor is None:
            self._load_everything(connection_id)
        while True:
            page = self.koppel.get(connection_id, "/v1/changes",
                                   **({"cursor": cursor} if cursor else {}))
            for event in page["data"]:
                if not self._apply(connection_id, event):
                    return
            cursor = page["next_cursor"]
            self.store.save_cursor(connection_id, cursor)
            if not page["has_more"]:
                return

    def _load_everything(self, connection_id: str) -> None:
        for company in self._pages(connection_id, "/v1/companies"):
            for employee in self._pages(connection_id,
                                        f"/v1/companies/{company['id']}/employees"):
                self.store.save_employee(connection_id, employee)

    def _pages(self, connection_id: str, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.koppel.get(connection_id, path, **({"cursor": cursor} if cursor else {}))
            items.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def _apply(self, connection_id: str, event: dict[str, Any]) -> bool:
        """Apply one change; False once the connection has ended."""
        if event["type"] == "connection.revoked":
            raise ConnectionGone(connection_id)
        if event["type"] in EMPLOYEE_EVENTS:
            employee_id = event["data"]["employee_id"]
            self.store.save_employee(
                connection_id, self.koppel.get(connection_id, f"/v1/employees/{employee_id}"))
        return True
