"""Tests of the `make bench` harness (bench/)."""
