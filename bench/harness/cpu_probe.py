"""Single-core measurements run in their own process (pinned to the server's core by the
harness), printing one JSON line:

    python -m bench.harness.cpu_probe argon2 SECONDS   # argon2id verifications/s
    python -m bench.harness.cpu_probe verify SECONDS   # raw ES256 and TokenVerifier /s
    python -m bench.harness.cpu_probe driver SECONDS   # psycopg and asyncpg statements /s
    python -m bench.harness.cpu_probe dpop SECONDS INPUT  # CPU us per bearer and DPoP read

`verify`, `driver` and `dpop` need KOPPEL_DATABASE_URL / KOPPEL_REDIS_URL / KOPPEL_VAR_DIR of
a migrated database; `verify` adds its own rows there and removes them
(bench/verify_tokens.py), `driver` reads the bench world's (bench/harness/driver_probe.py),
`dpop` calls the sync app in-process with the world's tokens in INPUT
(bench/harness/dpop_probe.py; also KOPPEL_SYNC_URL, the URL its proofs name).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from cryptography.hazmat.primitives.asymmetric import ec

from bench.auth_bench import argon2_ceiling
from bench.verify_tokens import (
    make_tokens,
    prepare_raw,
    setup,
    teardown,
    time_raw,
    time_verifier,
)

BATCH = 250


async def verify(seconds: float) -> dict[str, float]:
    """Interleaved batches of raw signature checks and full verifications (signature,
    claims, connection status via the status mirror) of the same tokens."""
    from shared.config import Settings
    from shared.runtime import open_runtime
    from shared.tokens import TokenVerifier

    settings = Settings()
    private = ec.generate_private_key(ec.SECP256R1())
    async with open_runtime(settings) as runtime:
        ids = setup(runtime, private)
        try:
            tokens = make_tokens(settings, private, ids, 2000)
            prepared = prepare_raw(tokens)
            verifier = TokenVerifier.from_runtime(runtime)
            for token in tokens[:50]:  # keys loaded, status mirror up
                await verifier.verify(token)
            spent = {"raw": 0.0, "verifier": 0.0}
            count = 0
            stop = time.perf_counter() + seconds
            while time.perf_counter() < stop:
                start = count % len(tokens)
                chunk = slice(start, start + BATCH)
                spent["raw"] += time_raw(private.public_key(), prepared[chunk])
                spent["verifier"] += await time_verifier(verifier, tokens[chunk])
                count += len(tokens[chunk])
            verifier.close()
        finally:
            teardown(runtime, ids)
    return {kind: count / s for kind, s in spent.items()}


def main() -> None:
    kind, seconds = sys.argv[1], float(sys.argv[2])
    if kind == "argon2":
        result = {"argon2": argon2_ceiling(seconds)}
    elif kind == "verify":
        result = asyncio.run(verify(seconds))
    elif kind == "driver":
        from bench.harness.driver_probe import driver
        from shared.config import Settings

        result = asyncio.run(driver(Settings().resolved_database_url, seconds))
    elif kind == "dpop":
        import uvloop  # the event loop `koppel serve` (uvicorn) runs the app on

        from bench.harness.dpop_probe import dpop

        result = uvloop.run(dpop(seconds, sys.argv[3]))
    else:
        raise SystemExit(f"unknown probe {kind!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
