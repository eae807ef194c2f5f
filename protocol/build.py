"""Building a member's next op: parents, seq and lamport from the DAG, then sign.

The local side of the DAG rules: an op names the current heads as parents (so it
acknowledges everything its author has seen) and always the author's own previous op;
its ``seq`` is one past the author's latest and its ``lamport`` one past the parents'
highest.
"""

from __future__ import annotations

from typing import Any

from crypto import Identity
from protocol.dag import Dag
from protocol.ops import check_local_body
from protocol.settings import Settings
from protocol.signed import MAX_PARENTS, VerifiedOp, sign_op

__all__ = ["genesis_op", "next_op"]


def next_op(
    identity: Identity,
    dag: Dag,
    *,
    network_id: bytes,
    op_type: str,
    body: dict[str, Any],
    time: int,
) -> VerifiedOp:
    """Sign the next op of ``identity`` on top of ``dag``.

    Raises:
        LocalProtocolError: the body is invalid for ``op_type`` (a message for the user).
    """
    check_local_body(op_type, body)
    latest = dag.latest(identity.public.key)
    heads = dag.heads()
    if latest is not None and latest[1] not in heads:
        heads.append(latest[1])
    if len(heads) > MAX_PARENTS:
        # Keep the author's previous op and the newest heads; the rest stay reachable
        # through later ops of other members.
        own = latest[1] if latest is not None else None
        others = sorted((h for h in heads if h != own), key=dag.order_key, reverse=True)
        heads = ([own] if own is not None else []) + others[: MAX_PARENTS - (own is not None)]
    lamport = 1 + max((dag.lamport(h) for h in heads), default=0)
    return sign_op(
        identity,
        net=network_id,
        seq=(latest[0] + 1) if latest is not None else 1,
        lamport=lamport,
        parents=heads,
        time=time,
        type=op_type,
        body=body,
    )


def genesis_op(
    identity: Identity,
    *,
    network_id: bytes,
    name: str,
    network_type: str,
    purpose: str,
    settings: Settings,
    epoch_id: bytes,
    display_name: str,
    kind: str,
    time: int,
) -> VerifiedOp:
    """The first op of a new network, by its creator.

    Raises:
        LocalProtocolError: a field is invalid (a message for the user).
    """
    body = {
        "display_name": display_name,
        "epoch": epoch_id,
        "kind": kind,
        "name": name,
        "purpose": purpose,
        "settings": settings.to_wire(),
        "type": network_type,
    }
    check_local_body("genesis", body)
    return sign_op(
        identity,
        net=network_id,
        seq=1,
        lamport=1,
        parents=[],
        time=time,
        type="genesis",
        body=body,
    )
