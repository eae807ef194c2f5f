"""LAN discovery over zeroconf (DNS-SD on multicast DNS) that links nobody.

Theory of operation
-------------------
Time is cut into periods (an hour by default, on the caller's clock). For period ``p``,
``NetworkSecret.lan_token(p)`` gives a 16-byte token ``T`` only members can compute.
Two keys come from ``T`` (keyed BLAKE2b, distinct personalisations, as in crypto):

- the *name key* makes the instance label ``hex(salt || tag)``: ``salt`` is 8 random
  bytes per advertisement and ``tag = BLAKE2b(salt, key=T, person="p2pnet-lan-name")``
  cut to 8 bytes. A member recognises its networks' labels before sending any query;
  to anyone else a label is random, and two members' labels share nothing even within
  one period (one label per network and period would group them, and clash in DNS-SD).
- the *record key* seals the dial record (the per-network libp2p peer id and the TCP
  port, zero-padded to a fixed size) as XChaCha20-Poly1305 with a fresh random 24-byte
  nonce; the associated data is the format version, the period and the label, so a
  record moved under another name or period is refused.

What one advertisement puts on the air, readable by everyone on the LAN::

    PTR  _p2pnet._tcp.local.         -> <label>._p2pnet._tcp.local.
    SRV  <label>._p2pnet._tcp.local. -> <random host>.local. port 0 (a constant; the
                                        real port is sealed)
    TXT  r=<nonce || ciphertext>        136 bytes, same size for everyone
    A    <random host>.local.        -> the address of the interface it is sent on

Label, host name, nonce and ciphertext are fresh at every period, so nothing in the
advertisement links two periods, a person, or two members. What still links (see
docs/decisions.md): the sender's IP and MAC addresses, the time of re-registration, and
the service type, which says "p2pnet" (hiding p2pnet use is not a goal yet).

Browsing accepts the previous, current and next period (clock skew up to one period).
The A record is not authenticated: an outsider may replay a member's advertisement with
its own address; members then dial it and the libp2p handshake (Noise, peer id) fails.

One :class:`zeroconf.Zeroconf` per interface address, each announcing only its own
address: zeroconf sends every address of a service on every interface, which would leak
a VPN or cellular address onto the Wi-Fi. Each runs zeroconf's asyncio thread and a
browser thread; ``on_found`` is called on the browser thread, or on the trio thread
when discovery runs under :meth:`LanDiscovery.run`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any  # trio_typing's stubs (a libp2p dependency) lack TaskStatus

import ifaddr
import trio
from zeroconf import (
    Error as ZeroconfError,
)
from zeroconf import (
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from crypto import DecryptionFailed, EpochKey, NetworkSecret, hash256, random_bytes
from p2pnet.errors import P2pnetError

__all__ = [
    "MAX_PEER_ID",
    "PERIOD_S",
    "RECORD_BYTES",
    "SERVICE_TYPE",
    "Advert",
    "BadAdvert",
    "DialRecord",
    "FoundCallback",
    "LanDiscovery",
    "LanNetwork",
    "LanUnavailable",
    "lan_addresses",
    "match_advert",
    "open_advert",
    "period_at",
    "seal_advert",
    "seconds_to_rotation",
]

log = logging.getLogger("p2pnet.net.lan")

SERVICE_TYPE = "_p2pnet._tcp.local."
PERIOD_S = 3600
MAX_PEER_ID = 92
_VERSION = 1
_SALT_BYTES = 8
_TAG_BYTES = 8
_PLAIN_BYTES = 96  # version, port (2), peer id length, peer id, zero padding
_NONCE_BYTES = 24
RECORD_BYTES = _NONCE_BYTES + _PLAIN_BYTES + 16
_TXT_KEY = b"r"
_SRV_PORT = 0
_AAD_PREFIX = b"p2pnet-lan-v1"
_KEY_ID = bytes(16)  # EpochKey wants an id; this one is never written anywhere
_LABEL = re.compile(r"[0-9a-f]{32}")
_PEER_ID = re.compile(rf"[A-Za-z0-9]{{1,{MAX_PEER_ID}}}")
_MAX_SEEN = 256
_MAX_SLEEP_S = 60.0  # how soon a jump of the wall clock is noticed
_REGISTER_S = 10.0


class BadAdvert(P2pnetError, ValueError):
    """An advertisement is not of this network and period, or was altered (opaque)."""


class LanUnavailable(P2pnetError, OSError):
    """LAN discovery cannot start: no usable interface address, or mDNS sockets refused."""


@dataclass(frozen=True, slots=True)
class DialRecord:
    """How to dial a member: its per-network libp2p peer id and TCP port."""

    peer_id: str
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.peer_id, str) or not _PEER_ID.fullmatch(self.peer_id):
            raise ValueError(f"a peer id is 1 to {MAX_PEER_ID} ASCII letters and digits")
        if not isinstance(self.port, int) or not 0 < self.port < 1 << 16:
            raise ValueError("port must be from 1 to 65535")


@dataclass(frozen=True, slots=True)
class Advert:
    """What one advertisement carries: the instance label and the TXT record value."""

    label: str
    record: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class LanNetwork:
    """One network that opted in to LAN discovery, and what to announce for it."""

    secret: NetworkSecret
    peer_id: str
    port: int

    def __post_init__(self) -> None:
        DialRecord(self.peer_id, self.port)  # validates both


FoundCallback = Callable[[bytes, str, list[str]], None]
"""``on_found(network_id, peer_id, addrs)``: a member of the network with that
``NetworkSecret.network_id`` listens at ``addrs`` (``/ip4/a.b.c.d/tcp/port``)."""


# --- the pure part: periods, labels, sealed dial records -----------------------------


def period_at(now: float, *, period_s: int = PERIOD_S) -> int:
    """The period that Unix time ``now`` falls in."""
    return max(int(now // period_s), 0)


def seconds_to_rotation(now: float, *, period_s: int = PERIOD_S) -> float:
    """Seconds from ``now`` to the start of the next period."""
    return (period_at(now, period_s=period_s) + 1) * period_s - now


def _tag(token: bytes, salt: bytes) -> bytes:
    return hash256(salt, person=b"p2pnet-lan-name", key=token)[:_TAG_BYTES]


def _record_key(token: bytes) -> EpochKey:
    return EpochKey(_KEY_ID, hash256(b"", person=b"p2pnet-lan-seal", key=token))


def _aad(period: int, label: str) -> bytes:
    return _AAD_PREFIX + period.to_bytes(8, "big") + bytes.fromhex(label)


def _label_matches(token: bytes, label: str) -> bool:
    if not _LABEL.fullmatch(label):
        return False
    raw = bytes.fromhex(label)
    return _tag(token, raw[:_SALT_BYTES]) == raw[_SALT_BYTES:]


def seal_advert(secret: NetworkSecret, period: int, dial: DialRecord) -> Advert:
    """A fresh advertisement of ``dial`` for ``period`` (random salt and nonce).

    Only holders of ``secret`` can recognise the label or open the record; two calls
    share no bytes. Raises ValueError if ``period`` is out of range.
    """
    token = secret.lan_token(period)
    salt = random_bytes(_SALT_BYTES)
    label = (salt + _tag(token, salt)).hex()
    peer_id = dial.peer_id.encode("ascii")
    plain = bytes([_VERSION]) + dial.port.to_bytes(2, "big") + bytes([len(peer_id)]) + peer_id
    plain += bytes(_PLAIN_BYTES - len(plain))
    nonce = random_bytes(_NONCE_BYTES)
    sealed = _record_key(token).encrypt(plain, _aad(period, label), nonce)
    return Advert(label, nonce + sealed)


def open_advert(secret: NetworkSecret, period: int, advert: Advert) -> DialRecord:
    """Authenticate and decode an advertisement of ``secret``'s network for ``period``.

    Raises:
        BadAdvert: another network or period, a label or record altered or malformed.
    """
    if not 0 <= period < 1 << 64 or not isinstance(advert.record, bytes):
        raise BadAdvert("not an advertisement of this network")
    token = secret.lan_token(period)
    if len(advert.record) != RECORD_BYTES or not _label_matches(token, advert.label):
        raise BadAdvert("not an advertisement of this network")
    nonce, sealed = advert.record[:_NONCE_BYTES], advert.record[_NONCE_BYTES:]
    try:
        plain = _record_key(token).decrypt(sealed, _aad(period, advert.label), nonce)
    except DecryptionFailed:
        raise BadAdvert("not an advertisement of this network") from None
    # Authentic, yet decoded strictly: a member's buggy or hostile node is still remote.
    end = 4 + plain[3]
    if plain[0] != _VERSION or end > len(plain) or any(plain[end:]):
        raise BadAdvert("malformed advertisement")
    try:
        return DialRecord(plain[4:end].decode("ascii"), int.from_bytes(plain[1:3], "big"))
    except ValueError:
        raise BadAdvert("malformed advertisement") from None


def _candidates(
    networks: Sequence[LanNetwork], period: int, label: str
) -> list[tuple[LanNetwork, int]]:
    """The (network, period) pairs, of the neighbouring periods, whose tag ``label`` bears."""
    periods = [p for p in (period, period - 1, period + 1) if 0 <= p < 1 << 64]
    return [
        (network, p)
        for network in networks
        for p in periods
        if _label_matches(network.secret.lan_token(p), label)
    ]


def match_advert(
    networks: Sequence[LanNetwork], period: int, advert: Advert
) -> tuple[LanNetwork, DialRecord] | None:
    """The network and dial record of an advertisement for ``period`` or a neighbour.

    ``None`` for anything else (strangers, other networks, altered bytes): never raises.
    """
    for network, p in _candidates(networks, period, advert.label):
        try:
            return network, open_advert(network.secret, p, advert)
        except BadAdvert:
            continue
    return None


# --- the sockets: zeroconf, one instance per interface address -----------------------


def lan_addresses() -> list[str]:
    """The IPv4 addresses of this machine's interfaces, loopback excepted."""
    found = {
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ipaddress.IPv4Address(ip.ip).is_loopback
    }
    return sorted(found, key=ipaddress.IPv4Address)


def _check_local(address: str) -> None:
    # zeroconf leaks its listening socket when an interface is missing: check first.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))


def _label_of(name: str) -> str | None:
    suffix = "." + SERVICE_TYPE
    if not name.endswith(suffix):
        return None
    label = name[: -len(suffix)]
    return label if _LABEL.fullmatch(label) else None


def _record_of(info: ServiceInfo) -> bytes | None:
    properties = info.properties
    record = properties.get(_TXT_KEY)
    if len(properties) != 1 or not isinstance(record, bytes) or len(record) != RECORD_BYTES:
        return None
    return record


def _usable(address: str) -> bool:
    ip = ipaddress.IPv4Address(address)
    return not (ip.is_unspecified or ip.is_multicast or ip.is_reserved)


async def _swap(zc: Zeroconf, new: list[ServiceInfo], old: list[ServiceInfo]) -> None:
    """On ``zc``'s loop: probe and announce ``new``, then say goodbye for ``old`` (even
    if ``new`` failed: an advertisement never outlives its period by more than one)."""
    try:
        announced = await asyncio.gather(*(zc.async_register_service(info) for info in new))
        await asyncio.gather(*announced)
    finally:
        goodbyes = await asyncio.gather(*(zc.async_unregister_service(info) for info in old))
        await asyncio.gather(*goodbyes)


@dataclass(slots=True)
class _Link:
    address: str
    zc: Zeroconf
    browser: ServiceBrowser | None = None
    infos: list[ServiceInfo] = field(default_factory=list)

    def close(self) -> None:
        """Stop browsing, send goodbyes, release sockets and threads; never raises."""
        steps = [self.zc.close] if self.browser is None else [self.browser.cancel, self.zc.close]
        for step in steps:
            try:
                step()
            except (ZeroconfError, OSError, RuntimeError) as exc:
                log.debug("LAN discovery: closing an interface: %s", type(exc).__name__)


class LanDiscovery:
    """Advertise the opted-in networks on the LAN and report the members found there.

    ``on_found(network_id, peer_id, addrs)`` is called once per advertisement of another
    member (again only if its addresses change), never for this node's own peer ids.
    Without :meth:`run` it is called on a zeroconf browser thread and must be thread-safe.
    An exception it raises is logged and does not stop discovery.

    Blocking methods (:meth:`start`, :meth:`rotate_if_due`, :meth:`stop`) are for a
    worker thread; under trio use :meth:`run`, which does all of it.
    """

    def __init__(
        self,
        networks: Sequence[LanNetwork],
        on_found: FoundCallback,
        *,
        interfaces: Sequence[str] | None = None,
        clock: Callable[[], float] = time.time,
        period_s: int = PERIOD_S,
        resolve_s: float = 2.0,
    ) -> None:
        """``interfaces``: the IPv4 addresses to discover on (default: every address of
        :func:`lan_addresses`); ``clock``: Unix time, the same wall clock for all members.

        Raises:
            ValueError: an interface is not an IPv4 address, or ``period_s`` < 1.
        """
        if period_s < 1:
            raise ValueError("period_s must be at least 1")
        for address in interfaces or ():
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise ValueError(f"interfaces are IPv4 addresses, not {address!r}") from None
        self._networks = tuple(networks)
        self._on_found = on_found
        self._interfaces = None if interfaces is None else list(interfaces)
        self._clock = clock
        self._period_s = period_s
        self._resolve_ms = int(resolve_s * 1000)
        self._life = threading.Lock()  # start, rotate and stop, one at a time
        self._lock = threading.Lock()  # state shared with browser threads, held briefly
        self._links: list[_Link] = []
        self._period: int | None = None
        self._own: set[str] = set()  # our labels, this period's and the previous one's
        self._seen: OrderedDict[str, tuple[bytes, str, tuple[str, ...]]] = OrderedDict()
        self._dispatch: FoundCallback = on_found

    def start(self) -> None:
        """Open the mDNS sockets, advertise the current period and start browsing.

        Blocks about 1.5 s (DNS-SD probing). Does nothing if already started.

        Raises:
            LanUnavailable: no interface address, one not on this machine, or the mDNS
                sockets refused; nothing stays open then.
        """
        with self._life:
            if self._links:
                return
            addresses = lan_addresses() if self._interfaces is None else self._interfaces
            if not addresses:
                raise LanUnavailable("no LAN interface with an IPv4 address")
            try:
                for address in addresses:
                    _check_local(address)
                    zc = Zeroconf(
                        interfaces=[address], ip_version=IPVersion.V4Only, use_asyncio=False
                    )
                    self._links.append(_Link(address, zc))
                self._advertise(self._current_period())
                for link in self._links:
                    link.browser = ServiceBrowser(link.zc, SERVICE_TYPE, handlers=[self._on_change])
            except (ZeroconfError, OSError, RuntimeError) as exc:
                self._close_links()
                raise LanUnavailable(f"LAN discovery cannot start: {exc}") from exc

    def rotate_if_due(self) -> bool:
        """Re-advertise under fresh names if the period changed; True if it did.

        Blocks about 1.5 s when it rotates. Trouble on an interface is logged, not
        raised: that interface stays silent until the next period.
        """
        with self._life:
            period = self._current_period()
            if not self._links or period == self._period:
                return False
            self._advertise(period)
            return True

    def stop(self) -> None:
        """Send goodbyes, stop browsing, release sockets and threads. Idempotent, never
        raises; blocks up to about ``resolve_s`` + 1 s.

        Not on the trio thread while :meth:`run` delivers finds: cancel :meth:`run`.
        """
        with self._life:
            self._close_links()
            with self._lock:
                self._period = None
                self._own.clear()
                self._seen.clear()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Under trio, until cancelled: start, rotate at each period, stop (shielded).

        ``on_found`` then runs on the trio thread (zeroconf's thread waits for it): keep
        it short, e.g. ``send_nowait`` on a channel or ``nursery.start_soon`` a dial.

        Raises:
            LanUnavailable: as :meth:`start`.
        """
        token = trio.lowlevel.current_trio_token()

        def in_trio(network_id: bytes, peer_id: str, addrs: list[str]) -> None:
            try:
                trio.from_thread.run_sync(
                    self._on_found, network_id, peer_id, addrs, trio_token=token
                )
            except trio.RunFinishedError:
                return  # the trio side is gone: nobody to tell

        self._dispatch = in_trio
        try:
            await trio.to_thread.run_sync(self.start)
            task_status.started()
            while True:
                due = seconds_to_rotation(self._clock(), period_s=self._period_s)
                await trio.sleep(min(due + 0.5, _MAX_SLEEP_S))
                await trio.to_thread.run_sync(self.rotate_if_due)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.stop)
            self._dispatch = self._on_found

    def _current_period(self) -> int:
        return period_at(self._clock(), period_s=self._period_s)

    def _advertise(self, period: int) -> None:
        """Replace every interface's advertisements with fresh ones for ``period``."""
        pending = []
        labels: set[str] = set()
        for link in self._links:
            new = [self._service_info(network, period, link.address) for network in self._networks]
            labels.update(info.name[: -len(SERVICE_TYPE) - 1] for info in link.infos + new)
            if link.zc.loop is not None:
                swap = _swap(link.zc, new, link.infos)
                pending.append((link, new, asyncio.run_coroutine_threadsafe(swap, link.zc.loop)))
        with self._lock:
            self._own = labels
            self._period = period
        for link, new, future in pending:
            try:
                future.result(timeout=_REGISTER_S)
            except (ZeroconfError, OSError, RuntimeError, CancelledError) as exc:
                log.warning("LAN discovery: advertising failed: %s", type(exc).__name__)
            link.infos = new

    def _service_info(self, network: LanNetwork, period: int, address: str) -> ServiceInfo:
        advert = seal_advert(network.secret, period, DialRecord(network.peer_id, network.port))
        return ServiceInfo(
            SERVICE_TYPE,
            f"{advert.label}.{SERVICE_TYPE}",
            port=_SRV_PORT,
            properties={_TXT_KEY: advert.record},
            server=f"{random_bytes(8).hex()}.local.",  # never the machine's host name
            parsed_addresses=[address],
        )

    def _close_links(self) -> None:
        links, self._links = self._links, []
        for link in links:
            link.close()

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        # An exception would end zeroconf's browser thread, and browsing with it.
        # Only the type is logged: a message could name a peer id or an address.
        try:
            self._handle(zeroconf, name, state_change)
        except Exception as exc:
            log.error("LAN discovery: a service event failed: %s", type(exc).__name__)

    def _handle(self, zc: Zeroconf, name: str, change: ServiceStateChange) -> None:
        label = _label_of(name)
        if label is None:
            return
        with self._lock:
            if change is ServiceStateChange.Removed:
                self._seen.pop(label, None)
                return
            if label in self._own:
                return
        period = self._current_period()
        if not _candidates(self._networks, period, label):
            return  # a stranger or another network: not even asked for its records
        info = zc.get_service_info(SERVICE_TYPE, name, timeout=self._resolve_ms)
        record = None if info is None else _record_of(info)
        found = (
            None if record is None else match_advert(self._networks, period, Advert(label, record))
        )
        if info is None or found is None:
            return
        network, dial = found
        if dial.peer_id == network.peer_id:
            return  # our own advertisement, from another interface or a previous run
        hosts = [a for a in info.parsed_addresses(IPVersion.V4Only) if _usable(a)]
        addrs = [f"/ip4/{host}/tcp/{dial.port}" for host in hosts]
        key = (network.secret.network_id, dial.peer_id, tuple(addrs))
        with self._lock:
            if not addrs or self._seen.get(label) == key:
                return
            self._seen[label] = key
            while len(self._seen) > _MAX_SEEN:
                self._seen.popitem(last=False)
        self._dispatch(network.secret.network_id, dial.peer_id, addrs)
