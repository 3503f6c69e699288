"""`koppel audit verify`: every environment's MAC chain against its head and against the
signed checkpoints (those stored in the database and those the operator kept elsewhere).

Faults found:
- an event whose MAC does not verify, that does not follow the one before, or a gap;
- a head that does not match the last event, or a chain without its head;
- a checkpoint whose signature does not verify against the attestation keys;
- a checkpointed seq that is missing or carries another hash (a cut tail, a chain
  deleted with its head, a re-written chain).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from shared.attestation import AttestationError, attestation_jwks, verify_attestation
from shared.audit import ChainFault, chain_events, walk_chain
from shared.audit_checkpoints import CHECKPOINT_TYP
from shared.models import AuditCheckpoint, AuditEvent, AuditHead
from shared.vault import KeyRing


@dataclass(frozen=True)
class CheckpointClaim:
    """A verified checkpoint: what its signer saw."""

    environment_id: uuid.UUID
    seq: int
    hash: str
    source: str  # "database" or "file"


@dataclass
class VerifyReport:
    environments: int = 0
    events: int = 0
    checkpoints: int = 0
    faults: list[ChainFault] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.faults


def parse_checkpoint_file(text: str) -> list[str]:
    """The checkpoint JWSs in a file: one per line, or the JSON document that
    `GET /v1/environment/audit-checkpoints` returns (or a list of its items or JWSs)."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        doc: Any = json.loads(stripped)
        items = doc.get("data", []) if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise ValueError("the checkpoint file's JSON has no list of checkpoints")
        tokens = [item.get("jws") if isinstance(item, dict) else item for item in items]
        strings = [t for t in tokens if isinstance(t, str)]
        if len(strings) != len(tokens):
            raise ValueError("a checkpoint in the file has no jws")
        return strings
    return [line.strip() for line in stripped.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _claim(token: str, jwks: dict[str, Any], source: str) -> CheckpointClaim:
    _, claims = verify_attestation(token, jwks, CHECKPOINT_TYP)
    try:
        environment_id = uuid.UUID(str(claims["environment_id"]))
        seq, link = claims["seq"], claims["hash"]
    except (KeyError, ValueError):
        raise AttestationError("the checkpoint's claims are incomplete") from None
    if type(seq) is not int or not isinstance(link, str):
        raise AttestationError("the checkpoint's seq or hash is malformed")
    return CheckpointClaim(environment_id, seq, link, source)


def _checkpoint_fault(claim: CheckpointClaim, last_seq: int, hashes: dict[int, str]) -> str | None:
    if claim.seq > last_seq or claim.seq not in hashes:
        return f"checkpointed seq {claim.seq} ({claim.source}) is missing"
    if hashes[claim.seq] != claim.hash:
        return f"checkpointed seq {claim.seq} ({claim.source}) carries another hash"
    return None


def verify_audit_log(session: Session, ring: KeyRing | None = None, *,
                     environment_id: uuid.UUID | None = None,
                     file_tokens: list[str] | None = None) -> VerifyReport:
    """Check the chains (all, or one environment's) against their heads and every
    checkpoint: the stored ones and `file_tokens`."""
    report = VerifyReport()
    jwks = attestation_jwks(session)
    claims: dict[uuid.UUID, list[CheckpointClaim]] = defaultdict(list)
    sources: list[tuple[str, str, uuid.UUID | None]] = []
    stored = select(AuditCheckpoint)
    if environment_id is not None:
        stored = stored.where(AuditCheckpoint.environment_id == environment_id)
    for row in session.exec(stored).all():
        sources.append((row.jws, "database", row.environment_id))
    sources += [(token, "file", None) for token in file_tokens or []]
    seen: set[str] = set()
    for token, source, row_env in sources:
        if token.strip() in seen:  # the same statement, stored and kept in the file
            continue
        seen.add(token.strip())
        try:
            claim = _claim(token, jwks, source)
        except AttestationError as exc:
            report.faults.append(ChainFault(row_env or uuid.UUID(int=0), 0,
                                            f"a checkpoint ({source}) is not valid: {exc}"))
            continue
        if row_env is not None and claim.environment_id != row_env:
            report.faults.append(ChainFault(row_env, claim.seq, "a stored checkpoint was moved "
                                            "to another environment"))
            continue
        if environment_id is None or claim.environment_id == environment_id:
            claims[claim.environment_id].append(claim)
            report.checkpoints += 1

    if environment_id is not None:
        environments = [environment_id]
    else:
        environments = sorted(
            set(session.exec(select(AuditHead.environment_id)).all())
            | set(session.exec(select(AuditEvent.environment_id).distinct()).all())
            | set(claims))
    for env in environments:
        keep = {c.seq for c in claims.get(env, [])}
        head = session.get(AuditHead, env)
        state = walk_chain(env, chain_events(session, env), head, ring, keep)
        report.environments += 1
        report.events += state.events
        report.faults += state.faults
        for claim in claims.get(env, []):
            problem = _checkpoint_fault(claim, state.last_seq, state.hashes)
            if problem is not None:
                report.faults.append(ChainFault(env, claim.seq, problem))
    return report
