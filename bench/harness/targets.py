"""The issue's targets: one row per figure, with its reference and its bar."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.harness.common import Figure


@dataclass(frozen=True)
class Target:
    key: str  # the figure's name
    label: str
    scenario: str  # the SCENARIO= name that measures it
    reference: str | None = None  # the reference figure's name, for a ratio target
    ratio: float | None = None  # at least this times the reference
    at_least: float | None = None
    below: float | None = None  # (no ratio, at_least or below: a figure without a bar)
    figure: str | None = None  # the figure, when it differs from `key`

    @property
    def source(self) -> str:
        return self.figure or self.key

    def describe(self) -> str:
        parts = []
        if self.ratio is not None:
            parts.append(f">= {self.ratio:g}x {SHORT[self.reference]}")
        if self.at_least is not None:
            parts.append(f">= {self.at_least:,.0f}")
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        return " and ".join(parts)

    def met(self, figures: dict[str, Figure]) -> bool | None:
        """True or False; None when the figure or its reference is missing."""
        figure = figures.get(self.source)
        if figure is None or not figure.runs:
            return None
        value = figure.median
        checks = []
        if self.ratio is not None:
            ratio = self.ratio_of(figures)
            if ratio is None:
                return None
            checks.append(ratio >= self.ratio)
        if self.at_least is not None:
            checks.append(value >= self.at_least)
        if self.below is not None:
            checks.append(value < self.below)
        return all(checks) if checks else None  # no bar: a figure to read, not a target

    def ratio_of(self, figures: dict[str, Figure]) -> float | None:
        if self.reference is None:
            return None
        figure, ref = figures.get(self.source), figures.get(self.reference)
        if not figure or not ref or not figure.runs or not ref.runs or not ref.median:
            return None
        value = figure.median / ref.median
        return None if math.isnan(value) else value


REFERENCES = {
    "ref_peer_cc": "oidc-provider client-credentials grants/s",
    "ref_argon2": "argon2id verifications/s (Koppel's parameters, one core)",
    "ref_es256": "raw ES256 signature verifications/s (one core)",
    "ref_bare": "bare FastAPI small-JSON requests/s (same uvicorn settings)",
    "ref_signed_send": "raw Standard Webhooks-signed sends/s (aiohttp, one core)",
    "dpop_bearer_reads": "bearer resource reads/s (one employee; the DPoP scenario's run)",
    "reads_untracked": "resource reads/s with scope-usage tracking off (a second sync)",
    "reads_uvicorn": "resource reads/s from `koppel serve sync` (uvicorn; the server scenario)",
    "reads_unlogged": "resource reads/s with the data-access log off (a second sync)",
    "employee_read_psycopg": "employee read statements per CPU-second, psycopg 3 (prepared)",
    "client_row_psycopg": "client look-ups per CPU-second, psycopg 3 (prepared)",
}

TARGETS = [
    Target("client_credentials", "client-credentials grants/s", "client_credentials",
           reference="ref_peer_cc", ratio=0.5),  # issue 18: at least 0.5x, aiming at 1x
    Target("refresh", "refresh grants/s (rotation included)", "refresh", at_least=1000),
    Target("code_exchange", "authorization-code exchanges/s", "code_exchange", at_least=800),
    Target("login", "password logins/s", "login", reference="ref_argon2", ratio=0.8),
    Target("par_exchange", "PAR + code exchange/s (private_key_jwt, DPoP)", "par_exchange"),
    Target("verify", "access-token verifications/s", "verify", reference="ref_es256",
           ratio=0.7),
    Target("reads", "resource reads/s (one employee)", "reads", reference="ref_bare",
           ratio=0.4),
    Target("reads_p99", "reads p99 at half that load, ms", "reads", below=20),
    Target("dpop_reads", "DPoP-bound resource reads/s (one employee)", "dpop_reads",
           reference="dpop_bearer_reads"),
    Target("dpop_cpu_us", "DPoP check: added server CPU per read, us", "dpop_reads",
           below=150),
    Target("reads_tracked", "resource reads/s with scope-usage tracking on", "scope_usage",
           reference="reads_untracked", ratio=0.95),
    Target("reads_logged", "resource reads/s with the data-access log on", "data_access",
           reference="reads_unlogged", ratio=0.9),
    Target("reads_granian", "resource reads/s, the same sync app under granian", "server",
           reference="reads_uvicorn"),
    Target("employee_read_asyncpg", "employee read statements per CPU-second, asyncpg",
           "driver", reference="employee_read_psycopg"),
    Target("client_row_asyncpg", "client look-ups per CPU-second, asyncpg", "driver",
           reference="client_row_psycopg"),
    Target("overview_first", "overview 1M: first page p95, ms", "overview", below=10),
    Target("overview_deep", "overview 1M: deep cursor page p95, ms", "overview", below=10),
    Target("overview_filtered", "overview 1M: filtered page p95, ms", "overview", below=10),
    Target("exposure_busiest", "exposure 1M: busiest company's employee p95, ms", "exposure",
           below=20),
    Target("exposure_median", "exposure 1M: median company's employee p95, ms", "exposure",
           below=20),
    Target("csv_rate", "CSV export 1M: rows/s", "csv", at_least=200_000),
    Target("csv_peak_mb", "CSV export 1M: peak server memory, MB", "csv", below=200),
    Target("deliveries", "webhook deliveries/s per worker", "deliveries", at_least=2000),
    Target("deliveries_vs_raw", "webhook deliveries/s vs raw signed send", "deliveries",
           reference="ref_signed_send", ratio=0.4, figure="deliveries"),
    Target("latency_p50", "commit to webhook received p50, ms", "latency", below=50),
    Target("latency_p99", "commit to webhook received p99, ms", "latency", below=250),
]

SHORT = {
    "ref_peer_cc": "oidc-provider",
    "ref_argon2": "argon2id ceiling",
    "ref_es256": "raw ES256",
    "ref_bare": "bare FastAPI",
    "ref_signed_send": "raw signed send",
    "dpop_bearer_reads": "bearer reads",
    "reads_untracked": "tracking off",
    "reads_uvicorn": "uvicorn",
    "reads_unlogged": "log off",
    "employee_read_psycopg": "psycopg",
    "client_row_psycopg": "psycopg",
}

SCENARIOS = list(dict.fromkeys(t.scenario for t in TARGETS))
EXTRA_SCENARIOS = ["soak"]
