"""The model base: one metadata with a naming convention, so migrations name constraints."""

from sqlalchemy import Table
from sqlmodel import SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata = SQLModel.metadata


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model."""
    # SQLModel's metaclass sets __table__, but its types do not declare it.
    return model.__table__  # type: ignore[attr-defined]
