"""The screens: onboarding, unlock, the networks list, a network's tabs, a decision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    Static,
)

from p2pnet.profile import MIN_PASSPHRASE_CHARS
from protocol.state import NetworkState
from tui.forms import (
    CreateNetworkForm,
    JoinForm,
    NewNetwork,
)

if TYPE_CHECKING:
    from tui.app import P2pnetApp

__all__ = [
    "NOTICE",
    "BaseScreen",
    "NetworksScreen",
    "OnboardingScreen",
    "PlainTable",
    "UnlockScreen",
    "strength",
]

NOTICE = "Positions and comments are signed and visible to every member."


def strength(passphrase: str) -> str:
    """A plain hint, not a promise: length matters most for a passphrase."""
    words = len(passphrase.split())
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        return (
            f"too short: use at least {MIN_PASSPHRASE_CHARS} characters"
            " (a few unrelated words is best)"
        )
    if len(passphrase) < 16 and words < 3:
        return "fair: longer is stronger; four or more unrelated words is good"
    return "strong enough, if it is not a phrase others could guess"


def short(value: bytes) -> str:
    return value.hex()[:8]


class PlainTable(DataTable[Any]):
    """A DataTable whose text cells are shown as they are. Textual reads ``str`` cells as
    markup: a member's name or a title with "[/b]" or "[link=…]" would style the screen
    or crash it (MarkupError), and those strings come from other members."""

    def add_row(self, *cells: Any, **kwargs: Any) -> Any:
        plain = [Text(c) if isinstance(c, str) else c for c in cells]
        return super().add_row(*plain, **kwargs)


class BaseScreen(Screen[None]):
    @property
    def p2p(self) -> P2pnetApp:
        from tui.app import P2pnetApp  # noqa: PLC0415 - the app imports this module

        assert isinstance(self.app, P2pnetApp)
        return self.app

    def refresh_data(self) -> None:
        """Re-read from the node (after a change, or an op arriving from a peer)."""


# -- first start and unlock ---------------------------------------------------------------


class OnboardingScreen(BaseScreen):
    """First start: a display name and a passphrase (with a strength hint)."""

    DEFAULT_CSS = """
    OnboardingScreen Vertical { width: 80; height: auto; margin: 2 4; }
    OnboardingScreen .error { color: $error; height: auto; }
    OnboardingScreen .hint { color: $text-muted; height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Label("[b]Welcome to p2pnet[/b]")
            yield Static(
                "Your identity lives only on this device, locked by a passphrase. If you "
                "lose the passphrase nobody can recover it; if someone takes the device, "
                "the passphrase is what protects your networks.",
                classes="hint",
            )
            yield Input(placeholder="Your display name (what members see)", id="name")
            yield Input(placeholder="Passphrase", password=True, id="pass")
            yield Label("", id="strength", classes="hint")
            yield Input(placeholder="Passphrase again", password=True, id="again")
            yield Label("", id="error", classes="error")
            yield Button("Create my identity", id="create", variant="primary")
        yield Footer()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "pass":
            self.query_one("#strength", Label).update(
                f"Strength: {strength(event.value)}" if event.value else ""
            )

    def on_input_submitted(self) -> None:
        self._create()

    def on_button_pressed(self) -> None:
        self._create()

    def _create(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        passphrase = self.query_one("#pass", Input).value
        error = self.query_one("#error", Label)
        if not name:
            error.update("Choose a display name (it can be a pseudonym).")
        elif len(passphrase) < MIN_PASSPHRASE_CHARS:
            error.update(f"The passphrase needs at least {MIN_PASSPHRASE_CHARS} characters.")
        elif passphrase != self.query_one("#again", Input).value:
            error.update("The two passphrases differ.")
        else:
            error.update("Creating your identity (deriving the key from the passphrase)…")
            self.p2p.create_identity(name, passphrase, background=True)


class UnlockScreen(BaseScreen):
    """The passphrase; a wrong one says so and changes nothing."""

    DEFAULT_CSS = """
    UnlockScreen Vertical { width: 70; height: auto; margin: 2 4; }
    UnlockScreen .error { color: $error; height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Label("[b]Unlock p2pnet[/b]")
            yield Input(placeholder="Passphrase", password=True, id="pass")
            yield Label("", id="error", classes="error")
            yield Button("Unlock", id="unlock", variant="primary")
        yield Footer()

    def on_input_submitted(self) -> None:
        self._unlock()

    def on_button_pressed(self) -> None:
        self._unlock()

    def _unlock(self) -> None:
        field = self.query_one("#pass", Input)
        if not field.value:
            self.query_one("#error", Label).update("Type your passphrase.")
            return
        self.query_one("#error", Label).update("Unlocking (deriving the key from the passphrase)…")
        self.p2p.unlock(field.value, background=True)
        field.value = ""

    def failed(self, text: str) -> None:
        self.query_one("#error", Label).update(text)


# -- the networks -------------------------------------------------------------------------


class NetworksScreen(BaseScreen):
    """Every network of the profile; create, join, open."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "create", "New network"),
        Binding("j", "join", "Join"),
        Binding("enter", "open", "Open", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="status", markup=False)  # names are members' own
        yield PlainTable(id="networks", cursor_type="row")
        yield Static(
            "n: create a network   j: join with a code   Enter: open   "
            "ctrl+x: panic (wipe this profile)",
            classes="hint",
        )
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Network", "Type", "Members", "Open decisions", "Sync")
        self.refresh_data()

    def refresh_data(self) -> None:
        states: list[NetworkState] = self.p2p.call(self.p2p.node.networks)
        table = self.query_one(DataTable)
        table.clear()
        for state in states:
            open_count = sum(1 for d in state.decisions.values() if d.status == "open")
            members = sum(1 for m in state.members.values() if m.active)
            table.add_row(
                state.name,
                state.network_type.replace("_", " "),
                str(members),
                str(open_count),
                self.p2p.sync_text(state.network_id),
                key=state.network_id.hex(),
            )
        self.query_one("#status", Static).update(self.p2p.status_line())
        if not states:
            self.query_one("#status", Static).update(
                "You belong to no network yet. Press n to create one, j to join with a code."
            )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(_network_screen(bytes.fromhex(event.row_key.value)))

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key is not None:
                self.app.push_screen(_network_screen(bytes.fromhex(key)))

    def action_create(self) -> None:
        self.app.push_screen(CreateNetworkForm(self.p2p.type_defaults()), self._created)

    def _created(self, result: NewNetwork | None) -> None:
        if result is None:
            return
        node = self.p2p.node
        if self.p2p.attempt(
            node.create_network, result.name, result.network_type, purpose=result.purpose
        ):
            self.app.notify(f"Created {result.name}. You are its first member.")
            self.refresh_data()

    def action_join(self) -> None:
        self.app.push_screen(JoinForm(), self._join)

    def _join(self, code: str | None) -> None:
        if code:
            self.app.notify("Contacting the inviter's node…")
            self.p2p.join(code)


def _network_screen(network_id: bytes) -> Screen[None]:
    from tui.network import NetworkScreen  # noqa: PLC0415 - it imports this module

    return NetworkScreen(network_id)
