"""Koppel's benchmarks: `make bench` runs bench/run.py; the older per-area scripts stay
runnable on their own and lend the harness their set-up code."""
