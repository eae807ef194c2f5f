"""The demo: three real nodes on loopback; the other two react to what the user does."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnet.net.background import NodeThread
from tui.app import P2pnetApp
from tui.demo import LOOPBACK, NET, Bot, build_demo

pytestmark = [pytest.mark.timeout(90), pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_the_others_take_positions_on_what_the_user_proposes(tmp_path: Path) -> None:
    nodes = build_demo(tmp_path)
    you, others = nodes[0], nodes[1:]
    state = you.state(NET)
    assert state.network_type == "coordination"
    assert any(a.adopted for a in state.agreements.values())  # a charter, adopted
    assert len([d for d in state.decisions.values() if d.status == "open"]) == 2
    threads = [NodeThread(n, listen=LOOPBACK, dial_members=False).start() for n in others]
    bots = [Bot(t, seed=i) for i, t in enumerate(threads)]
    try:
        peers = [t.runtimes[t.node.network_id(NET)].addresses[0] for t in threads]
        for bot in bots:
            bot.start()
        app = P2pnetApp(tmp_path / "you", network=True, listen=LOOPBACK, peers=peers, node=you)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            proposal = app.call(you.propose, NET, title="Open the kitchen on Sundays")
            others_keys = {n.identity.public.key for n in others}
            for _ in range(300):
                decision = app.call(you.state, NET).decisions[proposal.op_id]
                if others_keys <= {p.member for p in decision.positions}:
                    break
                await pilot.pause(0.05)
            assert others_keys <= {p.member for p in decision.positions}
    finally:
        for bot in bots:
            bot.stop()
        for thread in threads:
            thread.stop()
        for node in others:
            node.close()
