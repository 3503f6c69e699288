"""A dump of the database holds no usable token or secret (SECURITY.md line 30)."""

import base64
import json
import shutil
import subprocess
import sys
from datetime import timedelta

from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from services.sync.webhooks.signing import new_key_pair
from shared.config import Settings
from shared.db.types import utcnow
from shared.models import IdempotencyKey, SignatureScheme, UserTemplate, WebhookEndpoint
from shared.vault import KeyRing, SecretBox, TokenKind, new_token, token_digest
from shared.vault.columns import IDEMPOTENT_ANSWER, WEBHOOK_SECRET, WEBHOOK_SIGNING_KEY
from tests.fixtures.factories import (
    make_app,
    make_environment,
    make_partner,
    make_refresh_token,
    make_signing_key,
    make_token_family,
    make_user,
)

SECRET = b"-----BEGIN PRIVATE KEY----- dump-test-secret-4f1c9a"
WEBHOOK_WHSEC = b"whsec_ZHVtcC10ZXN0LXdlYmhvb2stc2VjcmV0LTRmMWM5YQ=="


SQLITE_DUMP = """
import sqlite3, sys
path = sys.argv[1]
for name in (path, path + "-wal"):
    try:
        sys.stdout.buffer.write(open(name, "rb").read())
    except FileNotFoundError:
        pass
conn = sqlite3.connect(path)
sys.stdout.buffer.write("\\n".join(conn.iterdump()).encode())
conn.close()
"""


def _dump(settings: Settings) -> bytes:
    """The database as an attacker would get it: pg_dump, or the SQLite files and their
    SQL dump (read by another process: closing the file here would drop SQLite's locks)."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "postgresql":
        libpq_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        pg_dump = shutil.which("pg_dump")
        assert pg_dump, "pg_dump is needed to dump the test database"
        command = [pg_dump, "--data-only", "--dbname", libpq_url]
    else:
        command = [sys.executable, "-c", SQLITE_DUMP, url.database]
    return subprocess.run(command, capture_output=True, check=True).stdout


def _forms(value: bytes) -> list[bytes]:
    """The ways a value shows up in a dump: raw, hex (bytea, X'..'), base64."""
    return [value, value.hex().encode(), value.hex().upper().encode(), base64.b64encode(value)]


def test_a_database_dump_holds_no_token_or_secret(
    settings: Settings, keyring: KeyRing, committing_sessions: sessionmaker[Session]
) -> None:
    tokens = {kind: new_token(kind) for kind in TokenKind}
    digests = {kind: token_digest(keyring.digest_key, token) for kind, token in tokens.items()}
    with committing_sessions() as session, session.begin():
        environment = make_environment(session, name="dump-test-environment")
        user = make_user(session, environment, template=UserTemplate.ACCOUNTANT)
        partner = make_partner(
            session, initial_access_token_digest=digests[TokenKind.INITIAL_ACCESS_TOKEN]
        )
        app = make_app(
            session,
            partner=partner,
            client_secret_digest=digests[TokenKind.CLIENT_SECRET],
            registration_access_token_digest=digests[TokenKind.REGISTRATION_ACCESS_TOKEN],
        )
        family = make_token_family(session, app, user)
        make_refresh_token(session, family, token_digest=digests[TokenKind.REFRESH_TOKEN])
        make_signing_key(session, SecretBox(keyring), private_key=SECRET)
        # The kept answer of an idempotent registration, which shows the client secret.
        answer = IdempotencyKey(owner="o" * 64, key="dump-test", fingerprint="f" * 64,
                                status_code=201, answer_ciphertext=b"", answer_key_id="",
                                expires_at=utcnow() + timedelta(hours=24))
        shown = {"client_secret": tokens[TokenKind.CLIENT_SECRET]}
        IDEMPOTENT_ANSWER.seal(SecretBox(keyring), answer, json.dumps(
            {"headers": [], "body": json.dumps(shown)}).encode())
        session.add(answer)
        # A webhook endpoint that signs with Ed25519: only its public key is in the clear.
        endpoint = WebhookEndpoint(app_id=app.id, url="https://hooks.example.test/d",
                                   events=["employee.updated"], secret_ciphertext=b"",
                                   secret_key_id="", signature_scheme=SignatureScheme.ED25519)
        WEBHOOK_SECRET.seal(SecretBox(keyring), endpoint, WEBHOOK_WHSEC)
        private_key, endpoint.public_key = new_key_pair()
        WEBHOOK_SIGNING_KEY.seal(SecretBox(keyring), endpoint, private_key)
        session.add(endpoint)

    dump = _dump(settings)

    # The dump is real: what is stored in the clear is in it.
    assert b"dump-test-environment" in dump
    assert b"dump-test" in dump and b"f" * 64 in dump
    assert digests[TokenKind.REFRESH_TOKEN].encode() in dump
    for token in tokens.values():
        assert all(form not in dump for form in _forms(token.encode())), token[:6]
    assert all(form not in dump for form in _forms(SECRET))
    assert endpoint.public_key.encode() in dump
    assert all(form not in dump for form in _forms(private_key))
    assert all(form not in dump for form in _forms(WEBHOOK_WHSEC))
    assert all(form not in dump for form in _forms(keyring.active_key))
    assert all(form not in dump for form in _forms(keyring.digest_key))
