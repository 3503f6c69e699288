"""Issue 14, finding 1: the audit log is tamper-evident against a database writer who
does not hold the key ring (docs/security.md, SECURITY.md's audit line).

Each attack of the finding is made on the database (what anyone who can write to it can
do) and `koppel audit verify` must exit non-zero: an edited event with the following
hashes recomputed and the head moved; a cut tail with the head moved back; an
environment's whole chain deleted with its head. The MAC catches the first, the signed
checkpoints (stored, and kept outside in a file) the other two.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import httpx
from joserfc import jws
from sqlmodel import Session, col, delete, select

from shared.audit import Actor, append, canonical_content
from shared.models import AuditCheckpoint, AuditEvent, AuditHead
from tests.cli.conftest import Invoke, cli_env, invoke  # noqa: F401 - fixtures
from tests.fixtures.legacy_audit import legacy_hash
from tests.services.registry.conftest import World
from tests.services.registry.support import accountant

EVENTS = 5


def _append(world: World, environment_id: uuid.UUID, n: int = EVENTS) -> None:
    with world.sessions() as session:
        for i in range(n):
            append(session, environment_id, "connection.revoked", Actor("system"),
                   "connection", uuid.uuid4(), reason=f"tidy {i}")
        session.commit()


def _events(session: Session, environment_id: uuid.UUID) -> list[AuditEvent]:
    return list(session.exec(select(AuditEvent).where(AuditEvent.environment_id == environment_id)
                             .order_by(col(AuditEvent.seq))).all())


def _verify(invoke: Invoke, *args: str) -> tuple[int, dict]:  # noqa: F811
    result = invoke("audit", "verify", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def _checkpoint_file(invoke: Invoke, path: Path) -> Path:  # noqa: F811
    """`koppel audit checkpoint`, its output kept in a file (one JWS per line)."""
    result = invoke("audit", "checkpoint")
    assert result.exit_code == 0, result.output
    path.write_text(result.stdout)
    return path


def _drop_stored_checkpoints(world: World) -> None:
    with world.sessions() as session:
        session.exec(delete(AuditCheckpoint))  # type: ignore[call-overload]
        session.commit()


def test_a_clean_log_verifies_and_says_what_it_checked(
    world: World, invoke: Invoke, tmp_path: Path  # noqa: F811
) -> None:
    _append(world, world.a.environment.id)
    _append(world, world.b.environment.id, 2)
    result = invoke("audit", "checkpoint")
    assert result.exit_code == 0, result.output
    kept = tmp_path / "checkpoints.txt"
    kept.write_text(result.stdout)
    assert len(kept.read_text().split()) == 2
    # Each checkpoint is also a structured log line (stderr), JWS included.
    logged = [json.loads(line) for line in result.stderr.splitlines()]
    assert [entry["event"] for entry in logged] == ["audit checkpoint"] * 2
    assert {entry["jws"] for entry in logged} == set(kept.read_text().split())

    code, report = _verify(invoke, "--checkpoints", str(kept))
    assert code == 0, report
    assert report == {"environments": 2, "events": EVENTS + 2, "checkpoints": 2, "ok": True,
                      "faults": []}
    text = invoke("audit", "verify")
    assert "2 environment(s), 7 event(s), 2 checkpoint(s) checked" in text.stdout


def test_an_edited_event_with_recomputed_hashes_is_found(
    world: World, invoke: Invoke  # noqa: F811
) -> None:
    environment_id = world.a.environment.id
    _append(world, environment_id)
    with world.sessions() as session:
        events = _events(session, environment_id)
        events[1].details = {"reason": "nothing to see"}
        prev = events[0].hash
        for event in events[1:]:  # the old rule: anyone can recompute plain SHA-256
            event.prev_hash, event.hash = prev, legacy_hash(prev, canonical_content(event))
            prev = event.hash
            session.add(event)
        head = session.get(AuditHead, environment_id)
        assert head is not None
        head.hash = prev
        session.add(head)
        session.commit()

    code, report = _verify(invoke)
    assert code == 1
    assert sorted(f["seq"] for f in report["faults"]) == [2, 3, 4, 5]
    assert all("MAC does not verify" in f["problem"] for f in report["faults"])

    # Claiming the rows predate the MAC does not help either.
    with world.sessions() as session:
        for event in _events(session, environment_id):
            event.mac_key_id = None
            session.add(event)
        session.commit()
    code, report = _verify(invoke)
    assert code == 1 and len(report["faults"]) == EVENTS
    assert all("has no MAC" in f["problem"] for f in report["faults"])


def test_a_cut_tail_with_the_head_moved_back_is_found(
    world: World, invoke: Invoke, tmp_path: Path  # noqa: F811
) -> None:
    environment_id = world.a.environment.id
    _append(world, environment_id)
    kept = _checkpoint_file(invoke, tmp_path / "checkpoints.txt")
    with world.sessions() as session:
        events = _events(session, environment_id)
        for event in events[-2:]:
            session.delete(event)
        head = session.get(AuditHead, environment_id)
        assert head is not None
        head.seq, head.hash = events[-3].seq, events[-3].hash
        session.add(head)
        session.commit()

    code, report = _verify(invoke)
    assert code == 1
    assert report["faults"] == [{"environment_id": str(environment_id), "seq": EVENTS,
                                 "problem": f"checkpointed seq {EVENTS} (database) is missing"}]

    # The writer deletes the stored checkpoints too: the copy kept outside still knows.
    _drop_stored_checkpoints(world)
    assert _verify(invoke)[0] == 0  # what the database alone can no longer show
    code, report = _verify(invoke, "--checkpoints", str(kept))
    assert code == 1
    assert [f["problem"] for f in report["faults"]] == [
        f"checkpointed seq {EVENTS} (file) is missing"]


async def test_a_chain_deleted_with_its_head_is_found(
    world: World, invoke: Invoke, client: httpx.AsyncClient, tmp_path: Path  # noqa: F811
) -> None:
    environment_id = world.a.environment.id
    _append(world, environment_id)
    assert invoke("audit", "checkpoint", "--environment", str(environment_id)).exit_code == 0
    # What the accountant keeps: the endpoint's JSON, as it came.
    response = await client.get("/v1/environment/audit-checkpoints", headers=accountant(world))
    assert response.status_code == 200, response.text
    kept = tmp_path / "checkpoints.json"
    kept.write_text(response.text)
    with world.sessions() as session:
        session.exec(delete(AuditEvent).where(  # type: ignore[call-overload]
            col(AuditEvent.environment_id) == environment_id))
        session.exec(delete(AuditHead).where(  # type: ignore[call-overload]
            col(AuditHead.environment_id) == environment_id))
        session.commit()

    code, report = _verify(invoke)
    assert code == 1
    assert report["faults"] == [{"environment_id": str(environment_id), "seq": EVENTS,
                                 "problem": f"checkpointed seq {EVENTS} (database) is missing"}]

    _drop_stored_checkpoints(world)
    code, report = _verify(invoke, "--checkpoints", str(kept))
    assert code == 1
    assert report["faults"] == [{"environment_id": str(environment_id), "seq": EVENTS,
                                 "problem": f"checkpointed seq {EVENTS} (file) is missing"}]


def test_a_missing_head_or_a_forged_checkpoint_is_a_fault(
    world: World, invoke: Invoke, tmp_path: Path  # noqa: F811
) -> None:
    environment_id = world.a.environment.id
    _append(world, environment_id)
    kept = _checkpoint_file(invoke, tmp_path / "checkpoints.txt")
    token = kept.read_text().strip()
    header, _, signature = token.split(".")
    claims = json.loads(jws.extract_compact(token.encode()).payload)
    forged_payload = jws.extract_compact(token.encode()).payload.replace(
        f'"seq":{claims["seq"]}'.encode(), b'"seq":2')
    forged = ".".join([header, base64.urlsafe_b64encode(forged_payload).rstrip(b"=").decode(),
                       signature])
    (tmp_path / "forged.txt").write_text(forged + "\n")
    code, report = _verify(invoke, "--checkpoints", str(tmp_path / "forged.txt"))
    assert code == 1
    assert "is not valid" in report["faults"][0]["problem"]

    with world.sessions() as session:
        session.delete(session.get(AuditHead, environment_id))
        session.commit()
    _drop_stored_checkpoints(world)
    code, report = _verify(invoke)
    assert code == 1
    assert report["faults"] == [{"environment_id": str(environment_id), "seq": EVENTS,
                                 "problem": "the chain head is missing"}]
