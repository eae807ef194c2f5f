"""What leaves or enters a node whole: the decision log and bundles, and what the
networking layer (p2pnet.net) asks of the node."""

from __future__ import annotations

from pathlib import Path

from crypto import NetworkSecret, random_bytes
from p2pnet._admission import Admission
from p2pnet._runtime import _LAN_KEY, _PEER_KEY, _Network, _quiet, _StoreHoldings
from p2pnet.bundle import (
    ImportReport,
    Progress,
    export_bundle,
    import_bundle,
    read_summary,
    write_private_file,
    write_summary,
)
from p2pnet.errors import NodeError
from p2pnet.files import open_or_fail, read_limited
from protocol import LogReport, RemoteProtocolError, export_log, verify_log
from protocol.invite import WELCOME_MAGIC
from protocol.log import MAX_LOG_BYTES

__all__ = ["Exchange"]


class Exchange(Admission):
    """The decision log, bundles, and the networking layer's view of the node."""

    # -- decision log --------------------------------------------------------------------

    def log_export(self, ref: str, path: Path, *, plain: bool = False) -> int:
        """Write the decision log (encrypted under a key every member holds, or plain for
        an outside auditor). Returns the number of closed decisions in it."""
        net = self._net(ref)
        state = net.state()
        ops = net.holdings.replica.ops()
        key = None if plain else net.secret.export_key
        data = export_log(state, ops, key=key, nonce=None if plain else random_bytes(24))
        write_private_file(path, [data])
        return sum(1 for d in state.decisions.values() if d.status == "closed")

    def log_check(self, ref: str) -> LogReport:
        """Export the network's decision log in memory and verify it, as anyone holding
        the file would (no file is written)."""
        net = self._net(ref)
        data = export_log(
            net.state(),
            net.holdings.replica.ops(),
            key=net.secret.export_key,
            nonce=random_bytes(24),
        )
        return verify_log(data, keys={net.secret.export_key.epoch_id: net.secret.export_key})

    def log_verify(self, path: Path) -> LogReport:
        """Check a decision log file, with the export keys of every network we hold."""
        data = read_limited(path, MAX_LOG_BYTES, f"{path} is too large to be a decision log")
        keys = {n.secret.export_key.epoch_id: n.secret.export_key for n in self._networks.values()}
        return verify_log(data, keys=keys)

    # -- bundles -------------------------------------------------------------------------

    def bundle_summary(self, ref: str, path: Path) -> bytes:
        net = self._net(ref)
        return write_summary(
            path, net.holdings, network_id=net.network_id, key=net.secret.bundle_key
        )

    def bundle_export(
        self,
        ref: str,
        path: Path,
        *,
        for_summary: Path | None = None,
        progress: Progress | None = None,
    ) -> int:
        net = self._net(ref)
        summary = None
        if for_summary is not None:
            keys = {net.network_id: net.secret.bundle_key}
            try:
                _, summary = read_summary(
                    read_limited(
                        for_summary, 1 << 20, f"{for_summary} is too large to be a summary"
                    ),
                    keys,
                )
            except RemoteProtocolError as exc:
                raise NodeError(f"that summary cannot be used: {exc}") from None
        return export_bundle(
            path,
            net.holdings,
            network_id=net.network_id,
            key=net.secret.bundle_key,
            for_summary=summary,
            progress=progress or _quiet,
        )

    def bundle_import(self, path: Path, *, progress: Progress | None = None) -> ImportReport:
        """Import a bundle into whichever network it belongs to.

        Raises:
            NodeError: not a bundle, damaged at the start, or for none of our networks.
        """
        with open_or_fail(path) as fh:
            head = fh.read(len(WELCOME_MAGIC))
        if head == WELCOME_MAGIC:
            return self._import_welcome(path, progress or _quiet)
        networks = {
            nid: (net.secret.bundle_key, _StoreHoldings(self, net))
            for nid, net in self._networks.items()
        }
        try:
            report = import_bundle(path, networks, progress=progress or _quiet)
        except RemoteProtocolError as exc:
            raise NodeError(str(exc)) from None
        except OSError as exc:
            raise NodeError(f"cannot read {path}: {exc.strerror or exc}") from None
        net = self._networks[report.network_id]
        if self._absorb_keys(net):
            self._persist_opened(net)
        self._rotate_if_due(net)
        return report

    # -- networking (p2pnet.net) ---------------------------------------------------------

    def network_ids(self) -> list[bytes]:
        """The ids of the networks this profile can use now."""
        return list(self._networks)

    def network_secret(self, network_id: bytes) -> NetworkSecret:
        """The network's secret (for the network layer's PSK and LAN token only)."""
        return self._networks[network_id].secret

    def peer_seed(self, network_id: bytes, *, purpose: str = "sync") -> bytes:
        """The 32-byte seed of this profile's libp2p key for the network: made once,
        kept sealed in the store (never in libp2p's peerstore), one per network so that
        peer ids never link a person's networks. ``purpose="invite"``: the key of the
        host that answers invite codes (its peer id is in the codes, so it is not the
        one members sync with)."""
        name = _PEER_KEY if purpose == "sync" else f"{_PEER_KEY}-{purpose}"
        with self.profile.store.transaction() as tx:
            seed = tx.get(network_id, name)
            if seed is None:
                seed = random_bytes(32)
                tx.put(network_id, name, seed)
        return seed

    def lan_discovery(self, network_id: bytes) -> bool:
        """Whether this profile advertises and looks for the network on the local network
        (opt-in, off by default: see docs/decisions.md "LAN discovery")."""
        return self.profile.store.get(network_id, _LAN_KEY) == b"\x01"

    def set_lan_discovery(self, ref: str, on: bool) -> None:
        """Turn LAN discovery on or off for a network (takes effect at the next run)."""
        self.profile.store.put(self.network_id(ref), _LAN_KEY, b"\x01" if on else b"\x00")

    def sign_peer(self, network_id: bytes, peer_id: bytes) -> bytes:
        """This member's signature binding libp2p ``peer_id`` to it in the network (the
        membership proof's signature; see p2pnet.net.membership)."""
        return self.identity.sign(b"peer", network_id + peer_id)

    def is_active(self, network_id: bytes, member: bytes) -> bool:
        """Whether ``member`` is an active member of the network in this node's view."""
        net = self._networks.get(network_id)
        if net is None:
            return False
        if net.loaded is None and net.cached is not None:
            cached = net.cached.members.get(member)
            return cached is not None and cached.active
        found = net.folder.members.get(member)  # the live record: no view is built
        return found is not None and found.status == "active"

    def published_peers(self, network_id: bytes) -> dict[bytes, tuple[str, tuple[str, ...]]]:
        """Active members other than us that published a peer id: key -> (peer id,
        addresses)."""
        me = self.identity.public.key
        return {
            key: (m.peer_id, m.addresses)
            for key, m in self._networks[network_id].state().members.items()
            if m.active and m.peer_id and key != me
        }

    def publish_addresses(self, network_id: bytes, peer_id: str, addresses: list[str]) -> bool:
        """Publish our peer id and addresses to the network (inside the encrypted state),
        unless it already holds them. Returns whether an op was written.

        Raises:
            NotAllowed: we are not an active member.
        """
        net = self._networks[network_id]
        me = net.state().members.get(self.identity.public.key)
        addresses = addresses[:8]
        if me is not None and me.peer_id == peer_id and list(me.addresses) == addresses:
            return False
        self._write(
            net.network_id.hex(), "member_update", {"peer_id": peer_id, "addresses": addresses}
        )
        return True

    def sync_holdings(self, network_id: bytes) -> _StoreHoldings:
        """What a sync session with a peer reads and fills (every batch is stored)."""
        net = self._networks[network_id]
        return _StoreHoldings(self, net)

    def after_sync(self, network_id: bytes) -> None:
        """Take in what sessions received: keys addressed to us, a rotation that is due."""
        net = self._networks[network_id]
        if self._absorb_keys(net):
            self._persist_opened(net)
        self._rotate_if_due(net)

    def refresh(self, network_id: bytes) -> None:
        """Fold in what another process (a CLI command) stored meanwhile."""
        net = self._networks[network_id]
        if self.profile.store.last_position(network_id) != net.position:
            self._catch_up(net)  # (a network served from the cache is loaded here)

    def envelopes_after(self, network_id: bytes, position: int) -> tuple[int, list[bytes]]:
        """The stored envelopes that arrived after local ``position``, and the newest
        position (for pushing what is new to live sessions)."""
        rows = list(self.profile.store.envelopes(network_id, after=position))
        return (rows[-1].position if rows else position), [r.data for r in rows]

    def last_position(self, network_id: bytes) -> int:
        return self.profile.store.last_position(network_id)

    def _persist_opened(self, net: _Network) -> None:
        # The rows a new key opened keep their ops now (_absorb_keys); fold in anything
        # else that arrived meanwhile.
        self._catch_up(net)
