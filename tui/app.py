"""The p2pnet terminal app: keyboard first, honest about what is and is not secret.

It talks to the node only through the :class:`~p2pnet.node.Node` API, on the node's own
thread (:class:`~p2pnet.net.background.NodeThread`); node events arrive as Textual
messages, so an op from a peer appears without a key press. Errors become notifications
with the remedy, never tracebacks.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen
from textual.timer import Timer

from crypto import CryptoError, KdfParams, KeystoreLocked
from p2pnet.errors import P2pnetError
from p2pnet.net.background import NodeThread
from p2pnet.node import Node, NodeEvent
from p2pnet.profile import ProfileError, profile_dir
from protocol import ProtocolError
from protocol.settings import defaults_for
from protocol.vocabulary import NETWORK_TYPES
from tui.forms import ConfirmForm
from tui.screens import NetworksScreen, OnboardingScreen, UnlockScreen

__all__ = ["P2pnetApp"]

T = TypeVar("T")
IDLE_LOCK_S = 10 * 60
# At most one refresh of the screen's data per this many seconds: a sync's stream of
# events does not keep the screen busy, and an op waits at most this long to show.
REFRESH_S = 0.1


class NodeChanged(Message):
    """Something changed in the node (posted from the node's thread)."""

    def __init__(self, event: NodeEvent) -> None:
        super().__init__()
        self.event = event


class Notice(Message):
    """A line for the user from the node's thread."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class P2pnetApp(App[None]):
    """``P2pnetApp(home, profile).run()``."""

    TITLE = "p2pnet"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+x", "panic", "Panic wipe", priority=True),
        Binding("ctrl+l", "lock", "Lock"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        home: Path,
        profile: str = "default",
        *,
        network: bool = True,
        listen: Sequence[str] = ("/ip4/0.0.0.0/tcp/0",),
        peers: Sequence[str] = (),
        kdf: KdfParams | None = None,
        node: Node | None = None,
        idle_lock_s: float = IDLE_LOCK_S,
    ) -> None:
        """``node``: an already unlocked node (the demo); ``kdf``: the key derivation for
        a new profile (tests use a cheap one)."""
        super().__init__()
        self.home = home
        self.profile = profile
        self._network = network
        self._listen = tuple(listen)
        self._peers = tuple(peers)
        self._kdf = kdf
        self._given = node
        self._thread: NodeThread | None = None
        self._idle_lock_s = idle_lock_s
        self._online = False
        self._opening = False  # a key derivation is running on a worker thread
        # Held by that worker while it opens or creates the profile, and to hand the node
        # over: a panic wipes at once, then takes it to close that node and wipe again
        # (what a profile being created wrote meanwhile).
        self._open_lock = threading.Lock()
        self._fresh: Node | None = None  # opened by the worker, not yet handed over
        self._wiped = False
        self._parked: Node | None = None  # opened while the panic dialog was up
        self._refresh_timer: Timer | None = None
        self._last_refresh = 0.0
        self._last_input = time.monotonic()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notifications carry names, titles and peers' error texts: plain by default."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # -- the node --------------------------------------------------------------------------

    @property
    def node(self) -> Node:
        assert self._thread is not None, "locked"
        return self._thread.node

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a node call on the node's thread."""
        assert self._thread is not None, "locked"
        return self._thread.call(fn, *args, **kwargs)

    def attempt(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """:meth:`call`, turning any failure a user or a peer can cause into a notice."""
        try:
            return self.call(fn, *args, **kwargs)
        except (P2pnetError, ProtocolError, CryptoError, OSError, ValueError) as exc:
            self.notify(str(exc) or type(exc).__name__, severity="error", timeout=8)
            return None

    def _opened(self, node: Node) -> None:
        self._thread = NodeThread(
            node,
            network=self._network,
            listen=self._listen,
            peers=self._peers,
            on_event=self._node_event,
            defer_network=True,  # the first screen first, then the network (a rebuild)
            # post_message never blocks the node's thread (call_from_thread would wait for
            # this thread, which may itself be waiting for the node: a deadlock).
            say=self._say,
        )
        try:
            self._thread.start()
        except P2pnetError as exc:
            self.notify(f"{exc}. Working offline.", severity="warning", timeout=10)
            self._thread = NodeThread(node, network=False)
            self._thread.start()
        if len(self.screen_stack) > 1:
            self.switch_screen(NetworksScreen())  # replaces the unlock or first-run screen
        else:
            self.push_screen(NetworksScreen())
        # Online once the first network view is up, or after a few seconds: bringing a
        # big network online loads its whole DAG on the node's thread (seconds at 100k
        # ops), and the first screens should not wait for that.
        self.set_timer(3.0, self.go_online)

    def go_online(self) -> None:
        """Start the networks (idempotent)."""
        thread = self._thread
        if thread is not None and not self._online:
            self._online = True
            thread.start_networks()

    def _node_event(self, event: NodeEvent) -> None:
        self.post_message(NodeChanged(event))  # thread-safe: from the node's thread

    def _say(self, text: str) -> None:
        self.post_message(Notice(text))

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, timeout=8)

    def on_node_changed(self, message: NodeChanged) -> None:
        event = message.event
        if not self.screen_stack:
            return  # the app is closing
        shown = getattr(self.screen, "network_id", None)
        if shown is not None and event.network_id != shown and event.kind != "network":
            return  # another network's news: this screen shows nothing of it
        self._refresh_soon()

    def _refresh_soon(self) -> None:
        # A sync brings batch after batch, each an event; a big network's tables take a
        # while to rebuild. The first event refreshes at once; later ones within
        # REFRESH_S share one refresh at the end of it.
        if self._refresh_timer is not None:
            return
        wait = self._last_refresh + REFRESH_S - time.monotonic()
        if wait <= 0:
            self._refresh_now()
        else:
            self._refresh_timer = self.set_timer(wait, self._refresh_now)

    def _refresh_now(self) -> None:
        self._refresh_timer = None
        self._last_refresh = time.monotonic()
        if not self.screen_stack:  # the app is closing: a trailing refresh has nothing to do
            return
        refresh = getattr(self.screen, "refresh_data", None)
        if refresh is not None and self._thread is not None:
            try:
                refresh()
            except (P2pnetError, KeyError) as exc:
                self.notify(str(exc), severity="warning")

    # -- start, unlock, lock ---------------------------------------------------------------

    def on_mount(self) -> None:
        self.set_interval(5, self._check_idle)
        if self._given is not None:
            self._opened(self._given)
        elif (profile_dir(self.home, self.profile) / "keystore").exists():
            self.push_screen(UnlockScreen())
        else:
            self.push_screen(OnboardingScreen())

    def create_identity(self, name: str, passphrase: str, *, background: bool = False) -> None:
        """Create the profile and open it. ``background``: derive the key (Argon2id, slow
        on purpose) on a worker thread, so that the screen keeps drawing and can say what
        it is doing; as the screens do."""
        self._open(
            lambda: Node.create(self.home, self.profile, passphrase, name=name, kdf=self._kdf),
            lambda text: self.notify(text, severity="error"),
            background=background,
        )

    def unlock(self, passphrase: str, *, background: bool = False) -> None:
        """Open the profile (see :meth:`create_identity` for ``background``)."""
        self._open(
            lambda: Node.open(self.home, self.profile, passphrase),
            self._unlock_failed,
            background=background,
        )

    def _open(
        self, opening: Callable[[], Node], failed: Callable[[str], None], *, background: bool
    ) -> None:
        if self._opening or self._thread is not None or self._parked is not None:
            return  # one at a time (a second Enter while the key is being derived)

        def attempt() -> tuple[Node | None, str]:
            try:
                return opening(), ""
            except KeystoreLocked:
                return None, "Wrong passphrase. Nothing was changed."
            except (P2pnetError, ProfileError, CryptoError, OSError) as exc:
                return None, str(exc)
            except Exception as exc:  # never leave the screen waiting for good
                return None, f"The profile could not be opened ({type(exc).__name__})."

        def finish(problem: str) -> None:
            self._opening = False
            with self._open_lock:
                node, self._fresh = self._fresh, None
            if node is None:
                if not self._wiped:
                    failed(problem)
            elif not self.is_running or self._wiped:
                node.close()  # the app closed (or wiped) while the key was being derived
            elif isinstance(self.screen, ModalScreen):
                # The panic confirmation came up meanwhile: it stays on top, and the node
                # waits for its answer (a wipe closes it first; a cancel opens it).
                self._parked = node
            else:
                self._opened(node)

        if not background:
            self._fresh, problem = attempt()
            finish(problem)
            return
        self._opening = True

        def work() -> None:
            with self._open_lock:
                if self._wiped:
                    return
                self._fresh, problem = attempt()
            try:
                self.call_from_thread(finish, problem)
            except RuntimeError:  # the app has stopped meanwhile
                with self._open_lock:
                    node, self._fresh = self._fresh, None
                if node is not None:
                    node.close()

        self.run_worker(work, thread=True, group="open", exit_on_error=False)

    def _unlock_failed(self, text: str) -> None:
        for screen in self.screen_stack:  # (perhaps under a dialog)
            if isinstance(screen, UnlockScreen):
                screen.failed(text)

    def _close_node(self) -> None:
        self._online = False
        if self._thread is not None:
            thread, self._thread = self._thread, None
            thread.stop()
            thread.node.close()

    def action_lock(self) -> None:
        if self._thread is None:
            return
        self._close_node()
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(UnlockScreen())
        self.notify("Locked.")

    def on_key(self) -> None:
        self._last_input = time.monotonic()

    def on_input_changed(self) -> None:
        # Inputs and text areas keep the keys they handle: typing reaches the app as their
        # Changed messages, and must count as activity for the idle lock.
        self._last_input = time.monotonic()

    def on_text_area_changed(self) -> None:
        self._last_input = time.monotonic()

    def _check_idle(self) -> None:
        if self._thread is not None and time.monotonic() - self._last_input > self._idle_lock_s:
            self.action_lock()

    def action_panic(self) -> None:
        def done(yes: bool | None) -> None:
            parked, self._parked = self._parked, None
            if not yes:
                if parked is not None:
                    self._opened(parked)  # unlocked while the dialog was up
                return
            # At once: the keystore first (nothing can be read without it). Then the nodes
            # are stopped and closed (their files are gone: errors are of no interest).
            with contextlib.suppress(OSError):  # (a profile being created: done below)
                Node.panic(self.home, self.profile)
            with contextlib.suppress(Exception):
                if parked is not None:
                    parked.close()
            with contextlib.suppress(Exception):
                self._close_node()
            # A profile being created (a key derivation on the worker) may write its files
            # after that: wait for the worker, close what it opened, and wipe again.
            with self._open_lock:
                self._wiped = True
                fresh, self._fresh = self._fresh, None
            if fresh is not None:
                with contextlib.suppress(Exception):
                    fresh.close()
            try:
                Node.panic(self.home, self.profile)
            except OSError as exc:
                self.exit(message=f"The wipe could not finish ({exc}): delete {self.home}.")
                return
            self.exit(message="The profile was wiped from this device.")

        self.push_screen(
            ConfirmForm(
                "Panic: wipe this profile now?",
                "Your identity, your networks and everything this device holds of them are "
                "destroyed. Other members keep theirs. This cannot be undone.",
                "Wipe everything",
            ),
            done,
        )

    def on_unmount(self) -> None:
        if self._parked is not None:
            self._parked.close()
            self._parked = None
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
            self._refresh_timer = None
        self._close_node()

    # -- helpers for screens ---------------------------------------------------------------

    def sync_text(self, network_id: bytes) -> str:
        if self._thread is None or not self._network:
            return "offline"
        peers = self._thread.peers_online(network_id)
        pending = self._thread.pending_outbound(network_id)
        last = self._thread.last_sync_ms(network_id)
        clock = time.strftime("%H:%M:%S", time.localtime(last / 1000)) if last else ""
        when = f", last sync {clock}" if last else ""
        queued = f", {pending} update(s) waiting to go out" if pending else ""
        return (
            (f"online, {peers} peer(s)" if peers else "online, no peer reached yet") + when + queued
        )

    def status_line(self) -> str:
        name = self.call(lambda: self.node.name)
        online = "online" if self._network and self._thread is not None else "offline"
        return f"{name} · {online}"

    def type_defaults(self) -> dict[str, str]:
        out = {}
        for network_type in NETWORK_TYPES:
            s = defaults_for(network_type)
            out[network_type] = (
                f"ordinary decisions by {s.ordinary_rule.rule}, admission "
                f"{s.admission.replace('_', ' ')}"
            )
        return out

    def invite_code(self, network_id: bytes, *, uses: int = 1, days: int = 7) -> str:
        runtime = self._thread.runtimes.get(network_id) if self._thread else None
        addresses = runtime.invite_addresses if runtime is not None else []
        return self.call(
            self.node.create_invite,
            network_id.hex(),
            uses=uses,
            expires_in_ms=days * 86_400_000,
            addresses=addresses,
        )

    def qr(self, text: str) -> str:
        import segno  # noqa: PLC0415

        buffer = io.StringIO()
        segno.make(text, error="m").terminal(out=buffer, compact=True)
        return buffer.getvalue()

    def join(self, code_text: str) -> None:
        from p2pnet.net.invite import join_async  # noqa: PLC0415
        from protocol.invite import parse_invite_code  # noqa: PLC0415

        try:
            code = parse_invite_code(code_text)
        except ProtocolError as exc:
            self.notify(str(exc), severity="error")
            return
        assert self._thread is not None
        thread = self._thread

        def run() -> None:
            try:
                # say=self._say: a message, never call_from_thread from the node's thread
                # (the UI may be waiting on that thread: a deadlock, reproduced).
                thread.run_async(lambda: join_async(thread.node, code, say=self._say))
            except (P2pnetError, ProtocolError) as exc:
                self.call_from_thread(self.notify, str(exc), severity="error", timeout=10)
                return
            self.call_from_thread(self._joined)

        self.run_worker(run, thread=True, exclusive=True, group="join")

    def _joined(self) -> None:
        self.notify("Welcome: you are a member.")
        screen = self.screen
        if isinstance(screen, NetworksScreen):
            screen.refresh_data()
