"""p2pnet on the network: py-libp2p hosts, the sync and invite protocols, LAN discovery."""
