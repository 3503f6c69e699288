"""first-party app reach: bound to an environment, or platform-wide

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 10:00:00

A first-party app used to reach every environment. From here on it is bound to one
environment or platform-wide. The first-party clients that `koppel demo seed` made are
bound to their demo environment; every other first-party app is suspended until an
operator runs `koppel app bind` or `koppel app make-platform` (never platform-wide by
default). What happened to each app is printed on stderr.
"""

import sys
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# How `koppel demo seed` names things (cli/demo_data.py, frozen here as it was when
# this migration was written): its client is `koppel-web-<slug>`, its logins are
# `<template>@<slug>.koppel.test`, and all of them live in the demo environment.
DEMO_CLIENT_PREFIX = "koppel-web-"
DEMO_EMAIL_DOMAIN = ".koppel.test"
DEMO_TEMPLATES = ("accountant", "master_client", "company", "hr_manager",
                  "payroll_hr_manager", "employee")

CHECKS = {
    "ck_apps_bound_or_platform": "NOT (platform AND environment_id IS NOT NULL)",
    "ck_apps_reach_is_first_party": "first_party OR (NOT platform AND environment_id IS NULL)",
    "ck_apps_unplaced_is_suspended": (
        "NOT first_party OR platform OR environment_id IS NOT NULL OR status = 'suspended'"),
}

apps = sa.table("apps", sa.column("id", sa.Uuid()), sa.column("client_id", sa.String()),
                sa.column("first_party", sa.Boolean()), sa.column("status", sa.String()),
                sa.column("environment_id", sa.Uuid()))
users = sa.table("users", sa.column("email", sa.String()),
                 sa.column("environment_id", sa.Uuid()))


def demo_environment(conn: sa.Connection, client_id: str):
    """The demo environment of a client that `koppel demo seed` made, else None.

    Reliable because the seed finds its environment the same way: by the emails of its
    logins, which are unique platform-wide. Logins in several environments (someone
    reused the names) prove nothing, so such an app is not bound."""
    if not client_id.startswith(DEMO_CLIENT_PREFIX):
        return None
    slug = client_id[len(DEMO_CLIENT_PREFIX):]
    if not slug:
        return None
    emails = [f"{template}@{slug}{DEMO_EMAIL_DOMAIN}" for template in DEMO_TEMPLATES]
    found = conn.execute(sa.select(users.c.environment_id).distinct()
                         .where(users.c.email.in_(emails))).scalars().all()
    return found[0] if len(found) == 1 else None


def place_first_party_apps(conn: sa.Connection) -> list[str]:
    """Bind the demo clients, suspend the other first-party apps; one line per app."""
    lines = []
    rows = conn.execute(sa.select(apps.c.id, apps.c.client_id, apps.c.status)
                        .where(apps.c.first_party.is_(True)).order_by(apps.c.client_id)).all()
    for app_id, client_id, status in rows:
        environment_id = demo_environment(conn, client_id)
        if environment_id is not None:
            conn.execute(apps.update().where(apps.c.id == app_id)
                         .values(environment_id=environment_id))
            lines.append(f"app {client_id}: bound to its demo environment {environment_id}")
        else:
            conn.execute(apps.update().where(apps.c.id == app_id).values(status="suspended"))
            lines.append(f"app {client_id}: suspended (was {status}); bind it with `koppel app "
                         f"bind {client_id} ENVIRONMENT_ID` or make it platform-wide with "
                         f"`koppel app make-platform {client_id}`")
    return lines


def upgrade() -> None:
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('environment_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('platform', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.create_index(batch_op.f('ix_apps_environment_id'), ['environment_id'],
                              unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_apps_environment_id_environments'),
                                    'environments', ['environment_id'], ['id'])
    for line in place_first_party_apps(op.get_bind()):
        print(f"migration 0010: {line}", file=sys.stderr, flush=True)
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.alter_column('platform', server_default=None)
        for name, condition in CHECKS.items():
            batch_op.create_check_constraint(op.f(name), condition)


def downgrade() -> None:
    with op.batch_alter_table('apps', schema=None) as batch_op:
        for name in CHECKS:
            batch_op.drop_constraint(op.f(name), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_apps_environment_id_environments'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_apps_environment_id'))
        batch_op.drop_column('platform')
        batch_op.drop_column('environment_id')
