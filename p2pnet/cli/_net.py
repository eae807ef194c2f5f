"""Commands that put the node on the network: run, sync, peers."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from p2pnet.cli._common import UserError, _emit, _open_node, _short

if TYPE_CHECKING:
    from p2pnet.node import Node

# p2pnet.net.runner imports py-libp2p (about a second): only these commands load it.

_MULTIADDR_HINT = "a multiaddr such as /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…"


_HOSTS = ("ip4", "ip6", "dns", "dns4", "dns6")


def _protocols(address: str, option: str, hint: str) -> list[tuple[str, str | None]]:
    """The protocols of a well-formed multiaddr with their values (the multiaddr library
    parses it: addresses, ports and peer ids are checked, not only the shape).

    Raises:
        UserError: it does not parse, naming the option and what was expected.
    """
    from multiaddr import Multiaddr  # noqa: PLC0415 - only these commands need it
    from multiaddr.exceptions import Error, MultiaddrError  # noqa: PLC0415

    try:
        parsed = Multiaddr(address)
        return [(p.name, parsed.value_for_protocol(p.code)) for p in parsed.protocols()]
    except (ValueError, Error, MultiaddrError):
        raise UserError(f"{option} {address!r} is not {hint}") from None


def _check_peers(addresses: list[str], option: str = "--peer") -> list[str]:
    for address in addresses:
        names = [name for name, _ in _protocols(address, option, _MULTIADDR_HINT)]
        if "p2p" not in names:
            raise UserError(f"{option} {address!r} is not {_MULTIADDR_HINT}")
    return addresses


def _check_listen(addresses: list[str]) -> list[str]:
    hint = "a TCP multiaddr like /ip4/0.0.0.0/tcp/4001"
    for address in addresses:
        names = [name for name, _ in _protocols(address, "--listen", hint)]
        if names[:2] not in (["ip4", "tcp"], ["ip6", "tcp"]):
            raise UserError(f"--listen {address!r} is not {hint}")
    return addresses


def _check_announce(addresses: list[str]) -> list[str]:
    """Addresses to publish to the network's members instead of the listening ones: a
    host and a TCP port others can dial, without a peer id (the node adds its own)."""
    hint = "a host and TCP port to publish, like /ip4/203.0.113.5/tcp/4001 (no /p2p/ part)"
    for address in addresses:
        parts = _protocols(address, "--announce", hint)
        names = [name for name, _ in parts]
        if len(names) != 2 or names[0] not in _HOSTS or names[1] != "tcp":
            raise UserError(f"--announce {address!r} is not {hint}")
        if int(parts[1][1] or 0) == 0:
            raise UserError(f"--announce {address!r}: port 0 cannot be dialled; {hint}")
    return addresses


def _say(args: argparse.Namespace) -> object:
    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    return say


def _run(args: argparse.Namespace) -> None:
    from p2pnet.net.runner import NodeLock, RunOptions, run_until_stopped, setup_logging  # noqa: PLC0415 - loads py-libp2p

    listen = _check_listen(args.listen or ["/ip4/0.0.0.0/tcp/0"])
    announce = _check_announce(args.announce) if args.announce else None
    peers = _check_peers(args.peer or [])
    relays = _check_peers(args.via or [], "--via")
    with _open_node(args) as node, NodeLock(node.profile.path):
        log = setup_logging(node.profile.path, debug=args.debug)
        options = RunOptions(
            listen=listen, announce=announce, peers=peers, relay=args.relay, relays=relays
        )
        say = _say(args)
        say(f"Running every network of this profile; Ctrl-C stops. Log: {log}")  # type: ignore[operator]
        run_until_stopped(node, options, say=say)  # type: ignore[arg-type]
    _emit(args, {"stopped": True}, "Stopped.")


def _sync(args: argparse.Namespace) -> None:
    from p2pnet.net.runner import NodeLock, setup_logging, sync_now  # noqa: PLC0415 - loads py-libp2p

    peers = _check_peers(args.peer or [])
    if args.timeout <= 0 or args.timeout > 3600:
        raise UserError("--timeout is in seconds, between 1 and 3600")
    with _open_node(args) as node, NodeLock(node.profile.path):
        network_id = node.network_id(args.net)
        setup_logging(node.profile.path, debug=args.debug)
        if not peers and not node.published_peers(network_id):
            raise UserError(
                "no member of this network has published an address yet: give one with "
                f"--peer ({_MULTIADDR_HINT}), or carry a bundle"
            )
        report = sync_now(
            node, network_id, peers=peers, once=args.once, timeout_s=args.timeout,
            say=_say(args),  # type: ignore[arg-type]
        )  # fmt: skip
    data = {
        "peers": report.peers,
        "received": report.received,
        "sent": report.sent,
        "errors": list(report.errors),
    }
    if report.peers == 0:
        reasons = "; ".join(sorted(set(report.errors))) or "no answer"
        raise UserError(f"could not sync with any peer ({reasons}); nothing changed")
    _emit(
        args,
        data,
        f"Synced with {report.peers} peer(s): {report.received} new envelope(s) in, "
        f"{report.sent} out.",
    )


def _peers(args: argparse.Namespace) -> None:
    from p2pnet.net.runner import NodeLock, read_status  # noqa: PLC0415 - loads py-libp2p

    with _open_node(args) as node:
        network_id = node.network_id(args.net)
        running = NodeLock.held(node.profile.path)
        status = read_status(node, network_id)
        names = _member_names(node, args.net)
    if status is None:
        _emit(
            args,
            {"running": running, "peers": []},
            "No node has run for this network yet: start one with p2pnet run.",
        )
        return
    rows = [
        {
            "peer_id": p.peer_id,
            "member": p.member.hex() if p.member else None,
            "name": names.get(p.member, "") if p.member else "",
            "address": p.address,
            "connected": p.connected and running,
            "last_sync_ms": p.last_sync_ms,
            "received": p.received,
            "sent": p.sent,
            "last_error": p.last_error,
        }
        for p in status["peers"]
    ]
    data = {
        "running": running,
        "updated_ms": status["at"],
        "peer_id": status["peer_id"],
        "addresses": status["addresses"],
        "peers": rows,
    }
    age = max(0, int(time.time() - status["at"] / 1000))
    lines = [
        ("A node is running" if running else f"No node is running (last status {age} s ago)")
        + f"; this profile's peer id here: {status['peer_id']}",
        *(f"  address {a}" for a in status["addresses"]),
    ]
    if not rows:
        lines.append("  no peers yet")
    for row in rows:
        who = row["name"] or (_short(bytes.fromhex(row["member"])) if row["member"] else "unknown")
        state = "connected" if row["connected"] else "not connected"
        synced = (
            f", last sync {max(0, int(time.time() - row['last_sync_ms'] / 1000))} s ago"
            if row["last_sync_ms"]
            else ""
        )
        error = f" ({row['last_error']})" if row["last_error"] and not row["connected"] else ""
        lines.append(
            f"  {who:<20} {state}{synced}, {row['received']} in / {row['sent']} out{error}"
        )
    _emit(args, data, "\n".join(lines))


def _member_names(node: Node, net: str) -> dict[bytes, str]:
    return {k: m.display_name for k, m in node.state(net).members.items()}


def _lan(args: argparse.Namespace) -> None:
    with _open_node(args) as node:
        network_id = node.network_id(args.net)
        if args.state is not None:
            node.set_lan_discovery(args.net, on=args.state == "on")
        on = node.lan_discovery(network_id)
    text = (
        "LAN discovery is on: while p2pnet runs, members on the same local network find "
        "each other without the Internet. Others on that network can see that someone "
        "runs p2pnet, but not which network or who (docs/decisions.md)."
        if on
        else "LAN discovery is off (the default): members are found only by the addresses "
        "they publish and by --peer."
    )
    _emit(args, {"network_id": network_id.hex(), "lan_discovery": on}, text)
