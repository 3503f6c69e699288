"""A burst of logins must not hold one 64 MiB argon2id buffer per thread at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from shared.passwords import MAX_CONCURRENT_HASHES
from tests.fixtures.backend import REPO_ROOT

# Enough threads that, unbounded, they would need far more than the bound allows.
BURST = max(16, 4 * MAX_CONCURRENT_HASHES)
SCRIPT = textwrap.dedent(f"""
    import resource, threading
    from shared.passwords import hash_password, verify_password
    stored = hash_password("correct horse")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        verify_password(stored, "correct horse"))) for _ in range({BURST})]
    for t in threads: t.start()
    for t in threads: t.join()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(sum(results), (after - before) // 1024)
""")


def test_concurrent_verifications_hold_at_most_one_buffer_per_core() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    verified, growth_mib = (int(v) for v in out)
    limit = MAX_CONCURRENT_HASHES
    assert verified == BURST
    # Unbounded, BURST threads would need about BURST x 64 MiB; bounded, the limit's worth.
    assert growth_mib <= 64 * limit + 32, (limit, growth_mib)
