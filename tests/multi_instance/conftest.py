"""The sync service's fixtures (app client, signed tokens, worlds) for these tests too."""

from tests.services.sync.conftest import sync_client, tokens  # noqa: F401 - fixtures
from tests.services.sync.worlds import data, world  # noqa: F401 - fixtures
