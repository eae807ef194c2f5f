"""Modal forms: every one validates inline and creates nothing until its input is valid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from protocol.rules import REASON_REQUIRED, STANCES, RuleSpec
from protocol.vocabulary import NETWORK_TYPES

__all__ = [
    "RULE_HELP",
    "SUPERMAJORITIES",
    "ConfirmForm",
    "CreateNetworkForm",
    "InviteForm",
    "JoinForm",
    "PositionForm",
    "ProposeForm",
    "ReviseForm",
    "ShowText",
    "VerifyForm",
    "rule_text",
]

RULE_HELP = {
    "consent": "adopted unless someone objects with a reason (sociocracy)",
    "consensus": "everyone agrees or stands aside; one block stops it",
    "majority": "more yes than no among those who vote, with a quorum",
    "supermajority": "yes must reach a share (such as 2/3) of the votes cast, of those "
    "taking part, or of all who may decide",
    "advice": "the proposer decides after hearing advice; nothing is voted",
    "sense_check": "a show of hands to see where people stand; decides nothing",
}
# The supermajorities a proposal can pick here (the command line takes any).
SUPERMAJORITIES = {
    "supermajority:2/3:cast": "supermajority, 2/3 of the votes cast",
    "supermajority:2/3:eligible": "supermajority, 2/3 of all who may decide",
}


def rule_text(rule: RuleSpec) -> str:
    """A rule as a member reads it: its name, its share and base, what it means."""
    name = rule.rule
    if rule.threshold is not None:
        name += f" {rule.threshold.num}/{rule.threshold.den} of {rule.base}"
    return f"{name} — {RULE_HELP.get(rule.rule, '')}"


class _Form(ModalScreen[Any]):
    """A modal with an error line; Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    _Form { align: center middle; }
    _Form > Vertical, _Form > VerticalScroll {
        width: 84; height: auto; max-height: 95%; border: round $accent;
        padding: 0 2; background: $surface;
    }
    _Form .error { color: $error; height: auto; }
    _Form .hint { color: $text-muted; height: auto; }
    _Form .heading { text-style: bold; }
    _Form Horizontal { height: auto; margin-top: 1; }
    _Form TextArea { height: 6; }
    """

    def on_mount(self) -> None:
        # Keyboard first: the first field takes the focus, so typing goes there at once.
        fields = list(self.query(Input))
        if fields:
            fields[0].focus()

    def error(self, text: str) -> None:
        self.query_one("#error", Label).update(text)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def buttons(self, ok: str) -> Horizontal:
        return Horizontal(Button(ok, id="ok", variant="primary"), Button("Cancel", id="cancel"))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        elif event.button.id == "ok":
            self.submit()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def submit(self) -> None:  # pragma: no cover - every form overrides it
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class NewNetwork:
    name: str
    network_type: str
    purpose: str


class CreateNetworkForm(_Form):
    """Name, type (each explained) and purpose; the type's default rules are shown."""

    def __init__(self, defaults: dict[str, str]) -> None:
        super().__init__()
        self._defaults = defaults  # type -> a sentence on its default rules

    def compose(self) -> ComposeResult:
        options = [(f"{t.replace('_', ' ')}", t) for t in NETWORK_TYPES]
        with Vertical():
            yield Label("[b]Create a network[/b]")
            yield Input(placeholder="Name (what members will see)", id="name")
            yield Select(options, prompt="Type", id="type")
            yield Static("", id="explain", classes="hint")
            yield Input(placeholder="Purpose, in one or two sentences", id="purpose")
            yield Label("", id="error", classes="error")
            yield self.buttons("Create")

    def on_select_changed(self, event: Select.Changed) -> None:
        value = event.value
        if isinstance(value, str):
            text = f"{NETWORK_TYPES[value]}\nRules by default: {self._defaults.get(value, '')}"
            self.query_one("#explain", Static).update(text)

    def submit(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        network_type = self.query_one("#type", Select).value
        if not name:
            self.error("Give the network a name.")
            return
        if not isinstance(network_type, str):
            self.error("Choose the network's type.")
            return
        purpose = self.query_one("#purpose", Input).value.strip()
        self.dismiss(NewNetwork(name, network_type, purpose))


@dataclass(frozen=True, slots=True)
class NewProposal:
    title: str
    text: str
    rule: str
    quorum: str


class ProposeForm(_Form):
    """A proposal: title, text, and a rule (each explained)."""

    NETWORK_RULE = "network"

    def __init__(self, network_rule: str) -> None:
        """``network_rule``: how the network's ordinary rule reads (chosen by default)."""
        super().__init__()
        self._network_rule = network_rule

    def compose(self) -> ComposeResult:
        options = [(f"the network's rule: {self._network_rule}", self.NETWORK_RULE)]
        options += [(f"{r} — {h}", r) for r, h in RULE_HELP.items() if r != "supermajority"]
        options += [(label, value) for value, label in SUPERMAJORITIES.items()]
        with Vertical():
            yield Label("[b]Propose[/b]  (everything you write here is seen by all members)")
            yield Input(placeholder="Title", id="title")
            yield TextArea(id="text")
            yield Select(options, value=self.NETWORK_RULE, id="rule", allow_blank=False)
            yield Input(value="1/2", placeholder="Quorum for another rule, e.g. 1/2", id="quorum")
            yield Label("", id="error", classes="error")
            yield self.buttons("Propose")

    def submit(self) -> None:
        title = self.query_one("#title", Input).value.strip()
        quorum = self.query_one("#quorum", Input).value.strip()
        if not title:
            self.error("A proposal needs a title.")
            return
        num, _, den = quorum.partition("/")
        if not (num.isdecimal() and den.isdecimal() and int(den) > 0 and int(num) <= int(den)):
            self.error("The quorum is a fraction like 1/2 (at most 1).")
            return
        rule = self.query_one("#rule", Select).value
        text = self.query_one("#text", TextArea).text.strip()
        self.dismiss(NewProposal(title, text, str(rule), quorum))


@dataclass(frozen=True, slots=True)
class NewPosition:
    stance: str
    reason: str


class PositionForm(_Form):
    """A stance allowed by the decision's rule; blocks and objections need a reason."""

    def __init__(self, title: str, rule: str) -> None:
        super().__init__()
        self._title = title
        self._rule = rule

    def compose(self) -> ComposeResult:
        stances = sorted(STANCES[self._rule])
        with Vertical():
            yield Label(f"Your position on: {self._title}", markup=False, classes="heading")
            yield Static("Positions are signed and visible to all members.", classes="hint")
            yield Select([(s.replace("_", " "), s) for s in stances], prompt="Stance", id="stance")
            yield Input(placeholder="Reason (required for a block or an objection)", id="reason")
            yield Label("", id="error", classes="error")
            yield self.buttons("Record")

    def submit(self) -> None:
        stance = self.query_one("#stance", Select).value
        reason = self.query_one("#reason", Input).value.strip()
        if not isinstance(stance, str):
            self.error("Choose a stance.")
            return
        if stance in REASON_REQUIRED and not reason:
            self.error(f"A {stance} needs a reason: say what would have to change.")
            return
        self.dismiss(NewPosition(stance, reason))


class JoinForm(_Form):
    """Paste an invite code."""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Join a network[/b]")
            yield Input(placeholder="Invite code (P2P1-…)", password=True, id="code")
            yield Static("The inviter's node must be running.", classes="hint")
            yield Label("", id="error", classes="error")
            yield self.buttons("Join")

    def submit(self) -> None:
        code = self.query_one("#code", Input).value.strip()
        if not code.upper().startswith("P2P1-"):
            self.error("An invite code starts with P2P1-.")
            return
        self.dismiss(code)


class VerifyForm(_Form):
    """Compare safety numbers in person; record only once the user confirms a match."""

    def __init__(self, name: str, digits: str, words: str, qr: str) -> None:
        super().__init__()
        self._member, self._digits, self._words, self._qr = name, digits, words, qr

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label(f"Verify {self._member} in person", markup=False, classes="heading")
            yield Static(
                "Meet, and compare this number with the one on their screen. Every "
                "digit must match. Or scan each other's code.",
                classes="hint",
            )
            yield Static(self._digits, id="digits")
            yield Static(self._words, classes="hint")
            yield Static(self._qr, id="qr")
            yield Label("", id="error", classes="error")
            yield Horizontal(
                Button("They match", id="ok", variant="success"),
                Button("They differ", id="differ", variant="error"),
                Button("Cancel", id="cancel"),
            )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        # Textual also runs _Form's handler (it dispatches along the MRO): only the extra
        # button is handled here.
        if event.button.id == "differ":
            event.prevent_default()
            self.error(
                "Do not trust this member's key: someone may be in between. Record "
                "nothing, and tell the network's organisers."
            )

    def submit(self) -> None:
        self.dismiss(self._digits)


class ConfirmForm(_Form):
    """Yes or no, with the consequences spelled out."""

    def __init__(self, title: str, text: str, ok: str = "Confirm") -> None:
        super().__init__()
        self._title, self._text, self._ok = title, text, ok

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, markup=False, classes="heading")
            yield Static(self._text, markup=False)
            yield Label("", id="error", classes="error")
            yield self.buttons(self._ok)

    def submit(self) -> None:
        self.dismiss(True)


class ShowText(_Form):
    """A text to read or copy (an invite code with its QR code)."""

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self._title, self._text = title, text

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label(self._title, markup=False, classes="heading")
            # Never markup: the text carries what members wrote (escaping is not enough:
            # Textual still reads tags like "[ @click=…]").
            yield Static(self._text, id="shown", markup=False)
            yield Label("", id="error", classes="error")
            yield Horizontal(Button("Close", id="cancel", variant="primary"))

    def submit(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True, slots=True)
class NewInvite:
    uses: int
    days: int


class InviteForm(_Form):
    """How many people a code admits, and for how long."""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Invite[/b]")
            yield Static(
                "Until it is used up or expires, whoever holds the code can ask to join.",
                classes="hint",
            )
            yield Input(value="1", placeholder="People it admits (1 to 100)", id="uses")
            yield Input(value="7", placeholder="Days it stays valid (1 to 90)", id="days")
            yield Label("", id="error", classes="error")
            yield self.buttons("Make the code")

    def submit(self) -> None:
        uses = self.query_one("#uses", Input).value.strip()
        days = self.query_one("#days", Input).value.strip()
        if not uses.isdecimal() or not 1 <= int(uses) <= 100:
            self.error("A code admits 1 to 100 people.")
            return
        if not days.isdecimal() or not 1 <= int(days) <= 90:
            self.error("A code lasts 1 to 90 days.")
            return
        self.dismiss(NewInvite(int(uses), int(days)))


@dataclass(frozen=True, slots=True)
class NewVersion:
    title: str
    text: str


class ReviseForm(_Form):
    """A new version of an agreement; adopting it is then a decision of the network."""

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self._title, self._text = title, text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Propose a new version[/b] (the network decides whether to adopt it)")
            yield Input(value=self._title, placeholder="Title", id="title")
            yield TextArea(self._text, id="text")
            yield Label("", id="error", classes="error")
            yield self.buttons("Propose it")

    def submit(self) -> None:
        title = self.query_one("#title", Input).value.strip()
        text = self.query_one("#text", TextArea).text.strip()
        if not title or not text:
            self.error("A version needs a title and a text.")
            return
        self.dismiss(NewVersion(title, text))
