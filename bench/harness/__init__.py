"""The `make bench` harness: set-up, load generation, references, scenarios, report."""
