"""The body of docs/benchmarks.md: the table, the machine, how each figure is measured,
the commands and the run's notes."""

from __future__ import annotations

from bench.harness.report import markdown_table


def document(table: list[list[str]], meta: dict, figures_notes: list[str]) -> str:
    m = meta["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` ({meta['command']}) on {meta['date']}; "
        f"{meta['runs']} runs of {meta['seconds']:g} s per scenario after a warm-up, "
        "median with min and max. Each figure is compared with a reference measured in the "
        "same run, on the same machine. `per CPU-s` is operations per CPU-second (user + "
        "system) of the process under test: steadier than wall-clock rates when other "
        "processes share the cores. Ratios and targets use the wall-clock medians.",
        "",
        markdown_table(table),
        "",
        "Profiles, what was optimised and what holds back each target marked NO: "
        "[performance.md](performance.md).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores, {m['memory']} memory, Linux {m['kernel']}",
        f"- PostgreSQL {m['postgresql']}, Redis {m['redis']}, Python {m['python']}, "
        f"Node.js {m['node']}",
        f"- load average (1, 5, 15 min) before: {meta['load_before']}, after: "
        f"{meta['load_after']}",
        f"- pinning: {meta['pinning']}",
        f"- duration: {meta['duration']}",
        "",
        "## How each figure is measured",
        "",
        "- Servers run as in production (`koppel serve auth|registry|sync`, `koppel worker`) "
        "against PostgreSQL and Redis on this machine (those two are not pinned); the load "
        "comes from an aiohttp generator (closed loop, 32 concurrent clients unless noted; "
        "open loop at a fixed rate for latencies, timed from each request's due time).",
        "- Grants: client credentials (ES256 JWT), refresh (rotation included) and code "
        "exchange (PKCE S256) against `bench-app`, single-use codes and refresh tokens "
        "minted into the database before each run; logins post the login form with pending "
        "authorization requests minted into Redis (argon2id verification included).",
        "- PAR + code exchange: `bench-fapi-app`, a FAPI 2.0 client (private_key_jwt with an "
        "ES256 key in its registered jwks, PAR required, DPoP-bound access tokens); one unit "
        "is POST /par (PKCE S256, `dpop_jkt`, a client assertion) then POST /token "
        "exchanging a code minted into the database bound to the DPoP key, with a fresh "
        "assertion and a DPoP proof. Assertions (audience: the issuer) and proofs are signed "
        "in a batch before each run, each with its own jti.",
        "- References: the bare FastAPI app is `bench/harness/bare_app.py` under the same "
        "uvicorn settings as `koppel serve`; argon2id and raw ES256 run in one process "
        "pinned to the server core (`bench/harness/cpu_probe.py`); `oidc-provider` "
        "(bench/peers/oidc-provider, exact version in its package-lock.json) issues ES256 "
        "JWT access tokens to one client-credentials client, pinned to the server core; the "
        "raw signed send (`bench/harness/signed_send.py`) posts Standard Webhooks-signed "
        "bodies to the same receiver the deliveries go to.",
        "- Reads: GET /v1/employees/{id} with connection tokens through the full verifier "
        "(rate-limit windows reset between runs, never raised); p99 from an open loop at "
        "half the measured median rate.",
        "- DPoP reads: the same reads with bearer tokens and with DPoP-bound connection "
        "tokens (`cnf.jkt`) of as many apps and connections, runs taken in turn, each "
        "request with a fresh ES256 "
        "proof (jti, htm, htu, ath, iat; signed in a batch before each run, not timed), "
        "against the same `koppel serve sync` in the same run; the row compares the two "
        "rates. The DPoP check's added server CPU per call comes from the `dpop` probe "
        "(`bench/harness/dpop_probe.py`), one process pinned to the server core: the real "
        "sync app (its lifespan, every middleware, the direct employee read, PostgreSQL and "
        "Redis) behind uvicorn's own HTTP/1.1 protocol (httptools) over in-memory "
        "connections, with the same tokens; rounds of a batch of 100 bearer and a batch of "
        "100 DPoP reads (order swapped every round, 32 connections busy), proofs signed "
        "before each batch, rate-limit windows reset between batches; the figure is the "
        "median over the rounds of the process's CPU time per DPoP read minus per bearer "
        "read, in µs, one per run of the probe. Every answer must be a 200 (and a replayed "
        "proof a 401), else the probe fails. The notes give the old estimate from the HTTP "
        "runs, 1/(DPoP reads/s) - 1/(bearer reads/s), which swings with everything else "
        "the two cores do.",
        "- Scope usage: the same reads (bearer) from `koppel serve sync` as configured "
        "(scope-usage tracking on) and from a second `koppel serve sync` with "
        "`KOPPEL_SCOPE_USAGE_TRACKING=false` (port 18706), both pinned to the server core, "
        "runs taken in turn; the target is the tracked rate at least 0.95x the untracked "
        "one (issue 19).",
        "- Data-access log: the same reads from `koppel serve sync` as configured (the log "
        "on: a Redis call per read, shared by concurrent reads) and from a second "
        "`koppel serve sync` with "
        "`KOPPEL_DATA_ACCESS_LOG=false` (port 18707), both pinned to the server core, runs "
        "taken in turn; the target is the logged rate at least 0.9x the unlogged one "
        "(issue 16).",
        "- Deliveries: a backlog of events x 50 endpoints written while no worker runs, then "
        "one `koppel worker` process drains it; rate from first to last receipt. Latency: "
        "PATCH /v1/employees/{id} at a fixed rate with the worker running, from the event's "
        "UUIDv7 (created in the API transaction) to the receiver.",
        "- Overview: p95 of 100 sequential requests per run (limit 50): the first page, a "
        "cursor 90 % in, the most popular app with status=active. CSV: the whole export "
        "streamed, the registry's peak RSS sampled every 50 ms.",
        "- Drivers: the busiest read's statement and the token endpoint's client look-up on "
        "psycopg 3 (prepared, autocommit) and on asyncpg, in one process pinned to the server "
        "core, 10 connections busy at once, one-second slices in turn; statements per CPU-second "
        "of that process (`bench/harness/driver_probe.py`).",
    ]
    lines += [
        "",
        "## Commands",
        "",
        "```",
        f"{meta['command']}    # = .venv/bin/python -m bench.run, from the checkout",
        "# processes it starts, each pinned to core 0 (ports 18701-18707):",
        "koppel serve auth|registry|sync --port PORT    # KOPPEL_DATABASE_URL=.../koppel_bench",
        "koppel worker",
        "python -m bench.harness.bare_app PORT",
        "python -m bench.harness.cpu_probe argon2|verify|driver SECONDS",
        "python -m bench.harness.cpu_probe dpop SECONDS INPUT    # INPUT: tokens, key",
        "python -m bench.harness.signed_send URL SECONDS 64",
        "node bench/peers/oidc-provider/server.js PORT CLIENT_ID SECRET",
        "koppel bench seed-connections --environment 'Bench 1M' --count N"
        "    # koppel_bench_overview, when its seed marker does not match",
        "```",
    ]
    if figures_notes:
        lines += ["", "## Notes from this run", "", *figures_notes]
    return "\n".join(lines) + "\n"
