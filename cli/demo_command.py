"""`koppel demo seed`: the demo environment, as JSON or as readable tables."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.context import load_settings, service_urls, transaction
from cli.db import upgrade
from cli.demo import DEFAULT_EMPLOYEES, seed_demo
from cli.output import emit_json, handle_errors, stdout
from shared.config import Settings
from shared.vault import load_keyring

app = typer.Typer(help="The demo environment.", no_args_is_help=True)


def seed(settings: Settings, name: str, employees: int = DEFAULT_EMPLOYEES) -> dict[str, Any]:
    """Migrate, then seed (or refresh) the demo environment in one transaction.

    The result carries the service URLs too.
    """
    upgrade(settings)
    keyring = load_keyring(settings)
    with transaction(settings) as session:
        document = seed_demo(session, keyring, name, employees)
    return {**document, "urls": service_urls(settings)}


def _table(title: str, *headers: str, show_header: bool = True) -> Table:
    table = Table(title=title, title_justify="left", show_header=show_header)
    for header in headers:
        # Fold rather than cut: every character of a login or secret must stay visible.
        table.add_column(header, overflow="fold")
    return table


def print_demo(console: Console, document: dict[str, Any]) -> None:
    """The demo logins, client and URLs as tables."""
    env = document["environment"]
    console.print(f"[bold]Demo environment[/bold] {env['name']} ({env['id']})")
    logins = _table("Demo logins", "template", "email", "password")
    for template, user in document["users"].items():
        logins.add_row(template, user["email"], user["password"])
    console.print(logins)
    client = document["first_party_client"]
    details = _table("First-party client", "", "", show_header=False)
    details.add_row("client_id", client["client_id"])
    details.add_row("client_secret", client["client_secret"])
    details.add_row("redirect_uri", client["redirect_uri"])
    console.print(details)
    tree = _table("Debtors and companies", "debtor", "company", "id")
    for debtor in document["debtors"]:
        tree.add_row(debtor["name"], "", debtor["id"])
        for company in debtor["companies"]:
            tree.add_row("", company["name"], company["id"])
    console.print(tree)
    urls = _table("Services", "service", "url")
    for service, url in document["urls"].items():
        urls.add_row(service, url)
    console.print(urls)


@app.command("seed")
@handle_errors
def seed_command(
    name: Annotated[str, typer.Option(help="Environment name; logins derive from it.")] = "demo",
    employees: Annotated[
        int, typer.Option(min=1, help="Employees per company.")
    ] = DEFAULT_EMPLOYEES,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Create the demo environment, or reset its passwords and client secret.

    Migrates the database first, so it works on a fresh checkout.
    """
    document = seed(load_settings(), name, employees)
    if as_json:
        emit_json(document)
    else:
        print_demo(stdout(), document)
