"""LAN discovery: sealed advertisements (pure) and zeroconf on loopback (real sockets)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from zeroconf import IPVersion, ServiceInfo, ServiceStateChange, Zeroconf

# The observer decodes packets with zeroconf's own parser (private modules, tests only).
from zeroconf._dns import DNSAddress, DNSPointer, DNSService, DNSText
from zeroconf._protocol.incoming import DNSIncoming

from crypto import NetworkSecret
from p2pnet.net import lan
from p2pnet.net.lan import (
    PERIOD_S,
    RECORD_BYTES,
    SERVICE_TYPE,
    Advert,
    BadAdvert,
    DialRecord,
    LanDiscovery,
    LanNetwork,
    LanUnavailable,
    match_advert,
    open_advert,
    period_at,
    seal_advert,
    seconds_to_rotation,
)
from tests.strategies import network_secrets

SECRET = NetworkSecret(bytes(range(32)))
OTHER = NetworkSecret(bytes(range(1, 33)))
PEER = "12D3KooWLanDiscoveryPeerIdOfMemberA1111111111111111"
DIAL = DialRecord(PEER, 40123)
NET = LanNetwork(SECRET, PEER, 40123)
P = 490_000  # an hour in 2025
NOW = P * PERIOD_S + 10.0

peer_ids = st.from_regex(r"[A-Za-z0-9]{1,92}", fullmatch=True)
ports = st.integers(1, 65535)
periods = st.integers(0, (1 << 64) - 1)


def _shared_run(a: bytes, b: bytes, n: int = 6) -> bool:
    """Whether ``a`` and ``b`` have ``n`` consecutive bytes in common."""
    return any(a[i : i + n] in b for i in range(len(a) - n + 1))


def _on_air(advert: Advert) -> bytes:
    return bytes.fromhex(advert.label) + advert.record


class TestPeriods:
    def test_period_boundaries(self) -> None:
        assert period_at(P * PERIOD_S) == P
        assert period_at(P * PERIOD_S - 0.001) == P - 1
        assert period_at(-5.0) == 0
        assert seconds_to_rotation(NOW) == pytest.approx(PERIOD_S - 10.0)
        assert period_at(95.0, period_s=60) == 1


class TestAdverts:
    def test_round_trip(self) -> None:
        advert = seal_advert(SECRET, P, DIAL)
        assert open_advert(SECRET, P, advert) == DIAL
        assert len(advert.record) == RECORD_BYTES
        assert len(advert.label) == 32

    def test_non_member_can_neither_open_nor_recognise(self) -> None:
        advert = seal_advert(SECRET, P, DIAL)
        with pytest.raises(BadAdvert):
            open_advert(OTHER, P, advert)
        assert match_advert([LanNetwork(OTHER, "Stranger", 1)], P, advert) is None
        # Nor compute a label of the network: one made with another secret never matches.
        forged = seal_advert(OTHER, P, DIAL)
        assert match_advert([NET], P, forged) is None

    def test_consecutive_periods_share_nothing(self) -> None:
        now, later = seal_advert(SECRET, P, DIAL), seal_advert(SECRET, P + 1, DIAL)
        assert now.label != later.label
        assert not _shared_run(_on_air(now), _on_air(later))
        for advert in (now, later):
            assert PEER.encode()[:6] not in _on_air(advert)

    def test_two_members_in_one_period_share_nothing(self) -> None:
        a = seal_advert(SECRET, P, DIAL)
        b = seal_advert(SECRET, P, DialRecord("12D3KooWOtherMember", 4001))
        assert not _shared_run(_on_air(a), _on_air(b))

    def test_records_have_one_size(self) -> None:
        short = seal_advert(SECRET, P, DialRecord("Q", 1))
        long = seal_advert(SECRET, P, DialRecord("Q" * lan.MAX_PEER_ID, 65535))
        assert len(short.record) == len(long.record) == RECORD_BYTES

    def test_tampered_record_is_refused_cleanly(self) -> None:
        advert = seal_advert(SECRET, P, DIAL)
        for i in (0, 30, RECORD_BYTES - 1):
            record = bytearray(advert.record)
            record[i] ^= 1
            assert match_advert([NET], P, Advert(advert.label, bytes(record))) is None

    def test_record_is_bound_to_its_label(self) -> None:
        a, b = seal_advert(SECRET, P, DIAL), seal_advert(SECRET, P, DIAL)
        assert match_advert([NET], P, Advert(a.label, b.record)) is None

    def test_other_network_is_ignored(self) -> None:
        theirs = seal_advert(OTHER, P, DIAL)
        assert match_advert([NET], P, theirs) is None
        both = [NET, LanNetwork(OTHER, "Mine", 9)]
        found = match_advert(both, P, theirs)
        assert found is not None
        assert found[0].secret is OTHER

    def test_neighbouring_periods_are_accepted(self) -> None:
        for period in (P - 1, P, P + 1):
            assert match_advert([NET], P, seal_advert(SECRET, period, DIAL)) == (NET, DIAL)
        for period in (P - 2, P + 2):
            assert match_advert([NET], P, seal_advert(SECRET, period, DIAL)) is None

    def test_first_and_last_periods(self) -> None:
        last = (1 << 64) - 1
        assert match_advert([NET], 0, seal_advert(SECRET, 0, DIAL)) == (NET, DIAL)
        assert match_advert([NET], last, seal_advert(SECRET, last, DIAL)) == (NET, DIAL)
        with pytest.raises(BadAdvert):
            open_advert(SECRET, -1, seal_advert(SECRET, 0, DIAL))

    @pytest.mark.parametrize(
        "plain",
        [
            bytes([2, 0, 80, 1]) + b"Q" + bytes(91),  # unknown version
            bytes([1, 0, 0, 1]) + b"Q" + bytes(91),  # port 0
            bytes([1, 0, 80, 1]) + b"Q" + bytes(90) + b"\x01",  # padding not zero
            bytes([1, 0, 80, 1]) + b"-" + bytes(91),  # not a peer id
            bytes([1, 0, 80, 0]) + bytes(92),  # empty peer id
            bytes([1, 0, 80, 93]) + b"Q" * 92,  # longer than the record
        ],
    )
    def test_authentic_but_malformed_is_refused(self, plain: bytes) -> None:
        # A member's buggy or hostile node seals with the right key: still decoded strictly.
        label = seal_advert(SECRET, P, DIAL).label
        nonce = bytes(24)
        token = SECRET.lan_token(P)
        sealed = lan._record_key(token).encrypt(plain, lan._aad(P, label), nonce)
        with pytest.raises(BadAdvert):
            open_advert(SECRET, P, Advert(label, nonce + sealed))

    def test_dial_records_are_checked_when_made(self) -> None:
        for peer_id, port in [("", 1), ("Q" * 93, 1), ("a b", 1), ("Q", 0), ("Q", 65536)]:
            with pytest.raises(ValueError, match=r"peer id|port"):
                DialRecord(peer_id, port)

    @settings(max_examples=200)
    @given(secret=network_secrets, period=periods, peer_id=peer_ids, port=ports)
    def test_round_trip_property(
        self, secret: NetworkSecret, period: int, peer_id: str, port: int
    ) -> None:
        dial = DialRecord(peer_id, port)
        advert = seal_advert(secret, period, dial)
        assert open_advert(secret, period, advert) == dial
        assert len(advert.record) == RECORD_BYTES

    @settings(max_examples=300)
    @given(period=periods, peer_id=peer_ids, port=ports, data=st.data())
    def test_any_mutation_is_refused(
        self, period: int, peer_id: str, port: int, data: st.DataObject
    ) -> None:
        advert = seal_advert(SECRET, period, DialRecord(peer_id, port))
        label, record = advert.label, bytearray(advert.record)
        kind = data.draw(st.sampled_from(["record", "label", "truncate", "extend"]))
        if kind == "record":
            i = data.draw(st.integers(0, len(record) - 1))
            record[i] ^= data.draw(st.integers(1, 255))
        elif kind == "label":
            i = data.draw(st.integers(0, len(label) - 1))
            char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != label[i]))
            label = label[:i] + char + label[i + 1 :]
        elif kind == "truncate":
            del record[data.draw(st.integers(0, len(record) - 1)) :]
        else:
            record += data.draw(st.binary(min_size=1, max_size=64))
        mutated = Advert(label, bytes(record))
        with pytest.raises(BadAdvert):
            open_advert(SECRET, period, mutated)
        assert match_advert([NET], period, mutated) is None


# --- real sockets: zeroconf on 127.0.0.1 ------------------------------------------------

MDNS_GROUP = "224.0.0.251"


def _loopback_multicast_problem() -> str | None:
    """None if a datagram sent to the mDNS group on 127.0.0.1 comes back here."""
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.bind(("", 0))
            membership = socket.inet_aton(MDNS_GROUP) + socket.inet_aton("127.0.0.1")
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            rx.settimeout(1.0)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            tx.sendto(b"p2pnet-probe", (MDNS_GROUP, rx.getsockname()[1]))
            rx.recvfrom(64)
    except OSError as exc:
        return f"multicast to {MDNS_GROUP} over 127.0.0.1 does not loop back here ({exc!r})"
    return None


_PROBLEM = _loopback_multicast_problem()
sockets = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")


@dataclass
class Finds:
    """What one discovery reported, for waiting on from the test thread."""

    found: list[tuple[bytes, str, list[str]]] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, network_id: bytes, peer_id: str, addrs: list[str]) -> None:
        with self.changed:
            self.found.append((network_id, peer_id, addrs))
            self.threads.add(threading.get_ident())
            self.changed.notify_all()

    def wait_for(self, peer_id: str, timeout: float = 10.0) -> list[str]:
        with self.changed:
            ok = self.changed.wait_for(lambda: peer_id in self.peers, timeout)
        assert ok, f"{peer_id} not found within {timeout} s (found {self.peers})"
        return next(addrs for _, p, addrs in self.found if p == peer_id)

    @property
    def peers(self) -> list[str]:
        return [peer_id for _, peer_id, _ in self.found]


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


Factory = Callable[..., tuple[LanDiscovery, Finds]]


@pytest.fixture
def discovery() -> Iterator[Factory]:
    made: list[LanDiscovery] = []

    def make(
        peer_id: str, port: int, *, secret: NetworkSecret, **kwargs: object
    ) -> tuple[LanDiscovery, Finds]:
        finds = Finds()
        net = LanNetwork(secret, peer_id, port)
        d = LanDiscovery([net], finds, interfaces=["127.0.0.1"], **kwargs)  # type: ignore[arg-type]
        made.append(d)
        return d, finds

    yield make
    for d in made:
        d.stop()


@dataclass
class Observer:
    """A passive listener on the mDNS group over loopback: what everyone on a LAN sees."""

    packets: list[bytes] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                self.packets.append(sock.recv(9000))
            except TimeoutError:
                continue

    def records(self) -> list[object]:
        return [r for data in self.packets for r in DNSIncoming(data).answers()]


@pytest.fixture
def observer() -> Iterator[Observer]:
    obs = Observer()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Bound to the group address: it gets multicast only and steals no unicast reply.
    sock.bind((MDNS_GROUP, 5353))
    membership = socket.inet_aton(MDNS_GROUP) + socket.inet_aton("127.0.0.1")
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.settimeout(0.1)
    thread = threading.Thread(target=obs.run, args=(sock,), daemon=True)
    thread.start()
    yield obs
    obs._stop.set()
    thread.join(5)
    sock.close()


@sockets
@pytest.mark.slow
@pytest.mark.timeout(60)
class TestOnLoopback:
    """Each test makes its own network secrets: other test runs on this machine share the
    loopback mDNS group, and their advertisements must be as foreign as a neighbour's."""

    def test_members_find_each_other_and_nobody_else(self, discovery: Factory) -> None:
        secret = NetworkSecret.generate()
        a, a_finds = discovery("MemberA", 4001, secret=secret, clock=Clock(NOW))
        # b's clock is an hour ahead: each accepts the other's period as a neighbour.
        b, b_finds = discovery("MemberB", 4002, secret=secret, clock=Clock(NOW + PERIOD_S))
        c, c_finds = discovery("Stranger", 4003, secret=NetworkSecret.generate())
        started = time.monotonic()
        for d in (a, b, c):
            d.start()
        assert b_finds.wait_for("MemberA") == ["/ip4/127.0.0.1/tcp/4001"]
        assert a_finds.wait_for("MemberB") == ["/ip4/127.0.0.1/tcp/4002"]
        assert time.monotonic() - started < 15
        time.sleep(1.0)  # time for a wrong find to show
        assert a_finds.found == [(secret.network_id, "MemberB", ["/ip4/127.0.0.1/tcp/4002"])]
        assert b_finds.peers == ["MemberA"]
        assert c_finds.found == []
        assert threading.get_ident() not in a_finds.threads  # zeroconf's thread calls it

    def test_an_observer_sees_nothing_stable(self, discovery: Factory, observer: Observer) -> None:
        secret, clock = NetworkSecret.generate(), Clock()
        a, _ = discovery(PEER, 40123, secret=secret, clock=clock)
        b, b_finds = discovery("MemberB", 4002, secret=secret, clock=clock)
        a.start()
        b.start()
        b_finds.wait_for(PEER)
        clock.now += PERIOD_S
        assert a.rotate_if_due()
        assert b.rotate_if_due()
        assert not a.rotate_if_due()
        with b_finds.changed:  # b finds a again, under its new name
            assert b_finds.changed.wait_for(lambda: b_finds.peers.count(PEER) >= 2, 10)
        a.stop()
        b.stop()
        before, after = _sightings(observer, secret, P), _sightings(observer, secret, P + 1)
        for seen in (before, after):  # one advertisement each of a and b, per period
            assert len(seen["label"]) == len(seen["host"]) == 2
            assert seen["port"] == {0}
            assert seen["address"] == {"127.0.0.1"}
            assert {len(text) for text in seen["txt"]} == {1 + len(b"r=") + RECORD_BYTES}
        for kind in ("label", "host", "txt"):
            assert before[kind].isdisjoint(after[kind])
        assert f"{socket.gethostname()}.local.".lower() not in before["host"] | after["host"]
        assert PEER.encode() not in b"".join(observer.packets)

    def test_forged_adverts_on_the_air_are_refused(
        self,
        discovery: Factory,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        clock = Clock()
        seen: list[str] = []
        real_match = lan.match_advert

        def spy(
            networks: list[LanNetwork], period: int, advert: Advert
        ) -> tuple[LanNetwork, DialRecord] | None:
            seen.append(advert.label)
            return real_match(networks, period, advert)

        monkeypatch.setattr(lan, "match_advert", spy)
        caplog.set_level(logging.DEBUG, logger="p2pnet.net.lan")
        secret = NetworkSecret.generate()
        member, finds = discovery("MemberB", 4002, secret=secret, clock=clock)
        member.start()
        genuine = seal_advert(secret, P, DialRecord("Genuine", 4444))
        flipped = seal_advert(secret, P, DialRecord("Flipped", 5555))
        swapped = seal_advert(secret, P, DialRecord("Swapped", 6666))
        extra = seal_advert(secret, P, DialRecord("ExtraKey", 7777))
        forged = [
            _info(flipped.label, {b"r": flipped.record[:-1] + bytes([flipped.record[-1] ^ 1])}),
            _info(swapped.label, {b"r": genuine.record}),
            _info(extra.label, {b"r": extra.record, b"x": b"1"}),
        ]
        hostile = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        try:
            _register(hostile, forged)
            _register(hostile, [_info(genuine.label, {b"r": genuine.record})])
            assert finds.wait_for("Genuine") == ["/ip4/127.0.0.1/tcp/4444"]
            deadline = time.monotonic() + 10
            while {flipped.label, swapped.label} - set(seen) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            hostile.close()
        assert {flipped.label, swapped.label} <= set(seen)  # resolved, then refused
        assert finds.peers == ["Genuine"]
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    def test_run_under_trio_delivers_on_the_trio_thread(self) -> None:
        secret, finds_a, finds_b = NetworkSecret.generate(), Finds(), Finds()
        a = LanDiscovery([LanNetwork(secret, "TrioA", 4001)], finds_a, interfaces=["127.0.0.1"])
        b = LanDiscovery([LanNetwork(secret, "TrioB", 4002)], finds_b, interfaces=["127.0.0.1"])

        async def main() -> int:
            async with trio.open_nursery() as nursery:
                await nursery.start(a.run)
                await nursery.start(b.run)
                with trio.fail_after(15):
                    while "TrioA" not in finds_b.peers or "TrioB" not in finds_a.peers:
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
            return threading.get_ident()

        trio_thread = trio.run(main)
        assert finds_a.threads == finds_b.threads == {trio_thread}
        assert a._links == b._links == []  # stopped on cancellation


@dataclass
class FakeZeroconf:
    """Answers resolutions from a dict, and remembers which names were asked for."""

    infos: dict[str, ServiceInfo] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def get_service_info(self, type_: str, name: str, timeout: int) -> ServiceInfo | None:
        self.asked.append(name)
        return self.infos.get(name)


class TestServiceEvents:
    """The browser's event handler, fed by a fake zeroconf (no sockets)."""

    def setup_method(self) -> None:
        self.finds = Finds()
        self.lan = LanDiscovery([NET], self.finds, interfaces=["127.0.0.1"], clock=Clock())
        self.zc = FakeZeroconf()

    def event(self, label: str, change: ServiceStateChange = ServiceStateChange.Added) -> None:
        zc = cast(Zeroconf, self.zc)
        self.lan._on_change(zc, SERVICE_TYPE, f"{label}.{SERVICE_TYPE}", change)

    def offer(self, advert: Advert, address: str = "192.0.2.9") -> str:
        info = _info(advert.label, {b"r": advert.record})
        info.addresses = [socket.inet_aton(address)]
        self.zc.infos[info.name] = info
        return advert.label

    def test_a_member_is_reported_once_per_advertisement(self) -> None:
        label = self.offer(seal_advert(SECRET, P, DialRecord("MemberB", 4002)))
        self.event(label)
        self.event(label, ServiceStateChange.Updated)
        assert self.finds.found == [(SECRET.network_id, "MemberB", ["/ip4/192.0.2.9/tcp/4002"])]
        self.event(label, ServiceStateChange.Removed)
        self.event(label)
        assert self.finds.peers == ["MemberB", "MemberB"]

    def test_strangers_are_not_even_resolved(self) -> None:
        label = self.offer(seal_advert(OTHER, P, DialRecord("Stranger", 4003)))
        self.event(label)
        self.event("not-a-label")
        assert self.zc.asked == []
        assert self.finds.found == []

    def test_our_own_peer_id_is_never_reported(self) -> None:
        # Our advertisement from another interface, or left in caches by a previous run.
        self.event(self.offer(seal_advert(SECRET, P, DIAL)))
        assert self.finds.found == []

    def test_bad_records_and_addresses_are_dropped(self) -> None:
        tampered = seal_advert(SECRET, P, DialRecord("Tampered", 4004))
        self.zc.infos[f"{tampered.label}.{SERVICE_TYPE}"] = _info(
            tampered.label, {b"r": tampered.record[:-1] + bytes([tampered.record[-1] ^ 1])}
        )
        self.event(tampered.label)
        self.event(self.offer(seal_advert(SECRET, P, DialRecord("Multicast", 1)), "224.0.0.1"))
        gone = seal_advert(SECRET, P, DialRecord("Gone", 4005))
        self.event(gone.label)  # resolution times out: no info
        assert len(self.zc.asked) == 3
        assert self.finds.found == []

    def test_a_failing_callback_is_logged_by_type_only(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def boom(network_id: bytes, peer_id: str, addrs: list[str]) -> None:
            raise RuntimeError(f"cannot dial {peer_id} at {addrs}")

        self.lan = LanDiscovery([NET], boom, interfaces=["127.0.0.1"], clock=Clock())
        self.event(self.offer(seal_advert(SECRET, P, DialRecord("MemberB", 4002))))
        assert [r.getMessage() for r in caplog.records] == [
            "LAN discovery: a service event failed: RuntimeError"
        ]


class TestLifecycle:
    def test_stop_before_start_and_twice(self) -> None:
        d = LanDiscovery([NET], Finds(), interfaces=["127.0.0.1"])
        d.stop()
        d.stop()
        assert not d.rotate_if_due()

    def test_an_address_not_on_this_machine_is_refused(self) -> None:
        d = LanDiscovery([NET], Finds(), interfaces=["198.51.100.7"])
        with pytest.raises(LanUnavailable):
            d.start()
        d.stop()

    def test_no_interface_is_refused(self) -> None:
        with pytest.raises(LanUnavailable, match="no LAN interface"):
            LanDiscovery([NET], Finds(), interfaces=[]).start()

    def test_lan_addresses_are_ipv4_and_not_loopback(self) -> None:
        for address in lan.lan_addresses():
            assert not address.startswith("127.")
            assert socket.inet_aton(address)

    def test_interfaces_must_be_ipv4_addresses(self) -> None:
        with pytest.raises(ValueError, match="IPv4"):
            LanDiscovery([NET], Finds(), interfaces=["eth0"])


def _info(label: str, properties: dict[bytes, bytes]) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        f"{label}.{SERVICE_TYPE}",
        port=0,
        properties=properties,
        server=f"h{label[:12]}.local.",
        parsed_addresses=["127.0.0.1"],
    )


def _register(zc: Zeroconf, infos: list[ServiceInfo]) -> None:
    assert zc.loop is not None
    asyncio.run_coroutine_threadsafe(lan._swap(zc, infos, []), zc.loop).result(10)


def _sightings(observer: Observer, secret: NetworkSecret, period: int) -> dict[str, set[Any]]:
    """What the observer saw of ``secret``'s advertisements for ``period``, by kind."""
    token = secret.lan_token(period)
    seen: dict[str, set[Any]] = {k: set() for k in ("label", "host", "port", "txt", "address")}
    records = observer.records()
    names = {
        r.alias
        for r in records
        if isinstance(r, DNSPointer) and lan._label_matches(token, r.alias.split(".")[0])
    }
    seen["label"] = {name.split(".")[0] for name in names}
    for r in records:
        if isinstance(r, DNSService) and r.name in names:
            seen["host"].add(r.server.lower())
            seen["port"].add(r.port)
        elif isinstance(r, DNSText) and r.name in names:
            seen["txt"].add(r.text)
    for r in records:
        if isinstance(r, DNSAddress) and r.name.lower() in seen["host"]:
            seen["address"].add(socket.inet_ntoa(r.address))
    return seen
