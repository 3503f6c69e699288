"""The `koppel` command line: operator tasks and the local supervisor (`koppel run`)."""
