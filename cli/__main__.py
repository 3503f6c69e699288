"""`python -m cli` runs the `koppel` command line (the supervisor starts its children so)."""

from cli.main import app

app(prog_name="koppel")
