"""The `koppel` command: `koppel --help` lists what it does."""

from __future__ import annotations

import typer

from cli import (
    apps,
    audit,
    bench,
    db,
    demo_command,
    directory,
    keys,
    partners,
    receipts,
    serve,
    supervisor,
)

app = typer.Typer(
    name="koppel",
    help="Koppel operator tasks: migrations, the demo, partners, keys and the services.",
    no_args_is_help=True,
    add_completion=False,
    # Locals can hold secrets (passwords, keys): never print them in a traceback.
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")
app.add_typer(demo_command.app, name="demo")
app.add_typer(partners.app, name="partner")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(receipts.app, name="receipt")
app.add_typer(apps.app, name="app")
app.add_typer(directory.app, name="directory")
app.add_typer(bench.app, name="bench")
app.command("serve")(serve.serve)
app.command("worker")(serve.worker)
app.command("run")(supervisor.run)
