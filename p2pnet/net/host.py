"""The libp2p host p2pnet builds: Noise only, yamux only, one connection per peer."""

from __future__ import annotations

from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from p2pnet.net import pnet

__all__ = ["DIAL_S", "UPGRADE_S", "network_host", "quiet_auto_connector"]

UPGRADE_S = 2.0  # a wrong PSK fails within this (issue 6: under 3 s, with margin on a busy machine)
DIAL_S = 5.0


def network_host(seed: bytes, *, psk: bytes | None = None) -> IHost:
    """A libp2p host for one network: Noise only (no plaintext, no secio), yamux only,
    one connection per peer, upgrades bounded to :data:`UPGRADE_S`; with ``psk`` (the
    network's 32-byte pre-shared key), a private network by the libp2p pnet spec."""
    key_pair = create_new_key_pair(seed)
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_pair().private_key)
    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        connection_config=ConnectionConfig(
            max_connections_per_peer=1,
            inbound_upgrade_timeout=UPGRADE_S,
            outbound_upgrade_timeout=UPGRADE_S,
            dial_timeout=DIAL_S,
        ),
        psk=_spec_psk(psk),
    )
    # One attempt per dial: the runtime retries with its own backoff (py-libp2p's three
    # retries made a wrong-PSK dial take about 13 s instead of 3).
    network = host.get_network()
    if hasattr(network, "retry_config"):
        network.retry_config = RetryConfig(max_retries=0)
    return host


def _spec_psk(psk: bytes | None) -> str | None:
    """py-libp2p's ``psk`` argument, with the libp2p-spec pnet layer installed for it
    (p2pnet/net/pnet.py; py-libp2p's own does not follow the spec)."""
    if psk is None:
        return None
    pnet.install()
    return pnet.psk_hex(psk)


async def quiet_auto_connector(host: IHost) -> None:
    """Stop py-libp2p's auto-connector: it dials peers from its peerstore (any peer
    identify told it about) to keep 50+ connections; p2pnet dials only members it chose."""
    connector = getattr(host.get_network(), "auto_connector", None)
    if connector is not None:
        await connector.stop()
