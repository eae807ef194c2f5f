"""A network's screens: its tabs (overview, members, agreements, decisions, log) and a
decision's detail."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Static,
    TabbedContent,
    TabPane,
)

from protocol.state import Decision, NetworkState
from tui.forms import (
    ConfirmForm,
    InviteForm,
    NewInvite,
    NewPosition,
    NewProposal,
    NewVersion,
    PositionForm,
    ProposeForm,
    ReviseForm,
    ShowText,
    VerifyForm,
    rule_text,
)
from tui.screens import NOTICE, BaseScreen, PlainTable, short

if TYPE_CHECKING:
    pass

__all__ = ["DecisionScreen", "NetworkScreen"]


# -- one network ----------------------------------------------------------------------------


class NetworkScreen(BaseScreen):
    """A network: overview, members, agreements, decisions, log."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Networks"),
        Binding("p", "propose", "Propose"),
        Binding("i", "invite", "Invite"),
        Binding("v", "verify", "Verify member"),
        Binding("e", "endorse", "Endorse"),
        Binding("r", "revise", "Revise agreement"),
        Binding("l", "verify_log", "Verify log"),
        Binding("1", "tab('overview')", "Overview", show=False),
        Binding("2", "tab('members')", "Members", show=False),
        Binding("3", "tab('agreements')", "Agreements", show=False),
        Binding("4", "tab('decisions')", "Decisions", show=False),
        Binding("5", "tab('log')", "Log", show=False),
    ]
    DEFAULT_CSS = """
    NetworkScreen .notice { color: $warning; height: 1; }
    NetworkScreen .hint { color: $text-muted; height: auto; }
    NetworkScreen #title { height: 1; }
    NetworkScreen TabbedContent { height: 1fr; }
    NetworkScreen TabPane { height: 1fr; }
    NetworkScreen DataTable { height: 1fr; }
    """

    def __init__(self, network_id: bytes) -> None:
        super().__init__()
        self.network_id = network_id
        self.ref = network_id.hex()
        self._verified: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="title", markup=False)
        yield Static(NOTICE + "  Keys 1-5: tabs.", classes="notice")
        with TabbedContent(id="tabs"):
            with TabPane("Overview", id="overview"):
                # What members wrote is shown as text, never read as markup.
                yield VerticalScroll(Static("", id="overview-text", markup=False))
            with TabPane("Members", id="members"):
                yield PlainTable(id="members-table", cursor_type="row")
                yield Static("", id="matches", classes="hint", markup=False)
            with TabPane("Agreements", id="agreements"):
                yield PlainTable(id="agreements-table", cursor_type="row")
            with TabPane("Decisions", id="decisions"):
                yield PlainTable(id="decisions-table", cursor_type="row")
            with TabPane("Log", id="log"):
                yield VerticalScroll(Static("", id="log-text", markup=False))
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#members-table", DataTable).add_columns(
            "Name", "Kind", "Offers", "Needs", "Verified in person by", "Status"
        )
        self.query_one("#agreements-table", DataTable).add_columns(
            "Agreement", "Kind", "Version", "Adopted", "Endorsed by", "Not yet"
        )
        self.query_one("#decisions-table", DataTable).add_columns(
            "Decision", "Rule", "Status", "Positions", "Outcome"
        )
        self.refresh_data()
        self.call_after_refresh(self.p2p.go_online)

    def state(self) -> NetworkState:
        state: NetworkState = self.p2p.call(self.p2p.node.state, self.ref)
        return state

    def refresh_data(self) -> None:
        state = self.state()
        names = {k: m.display_name for k, m in state.members.items()}
        self.query_one("#title", Static).update(
            f"{state.name} · {state.network_type.replace('_', ' ')} · "
            f"{self.p2p.sync_text(self.network_id)}"
        )
        self._overview(state)
        self._members(state, names)
        self._agreements(state, names)
        self._decisions(state)
        self._log(state)

    def _log(self, state: NetworkState) -> None:
        closed = [d for d in state.decisions.values() if d.status == "closed"]
        lines = ["The decision log: closed decisions, as every member's node recomputes them.", ""]
        for d in closed:
            outcome = d.outcome.outcome.replace("_", " ") if d.outcome else "?"
            disputed = "  (the close is disputed)" if d.disputed else ""
            lines.append(f"  {d.title}: {outcome}{disputed}")
        if not closed:
            lines.append("  no decision closed yet")
        lines += ["", "Press l to export the log in memory and verify it, as an auditor would."]
        lines += self._verified
        self.query_one("#log-text", Static).update("\n".join(lines))

    def _overview(self, state: NetworkState) -> None:
        s = state.settings
        charter = [a for a in state.agreements.values() if a.kind == "charter"]
        unverified = sorted(
            (m.display_name for m in state.members.values() if m.active and not m.verified_by),
            key=str.casefold,
        )
        warnings = []
        if state.equivocators:
            warnings.append(f"{len(state.equivocators)} member(s) signed conflicting histories")
        disputed = [d.title for d in state.decisions.values() if d.disputed]
        if disputed:
            warnings.append("disputed closes: " + ", ".join(disputed))
        if unverified:
            warnings.append("not verified in person by anyone: " + ", ".join(unverified))
        lines = [
            f"Purpose: {state.purpose or '—'}",
            f"Ordinary decisions: {rule_text(s.ordinary_rule)}",
            f"Admission: {s.admission.replace('_', ' ')}",
            f"Charter: {'adopted' if any(a.adopted for a in charter) else 'not adopted yet'}",
            f"Key epoch: {len(state.epochs)}",
            f"Sync: {self.p2p.sync_text(self.network_id)}",
            "",
            "Warnings: " + ("; ".join(warnings) if warnings else "none"),
            "",
            "Not secret: the fact that you run p2pnet (visible on your network), your "
            "address (to members), and everything you write (to every member).",
        ]
        self.query_one("#overview-text", Static).update("\n".join(lines))

    def _members(self, state: NetworkState, names: dict[bytes, str]) -> None:
        table = self.query_one("#members-table", DataTable)
        table.clear()
        for key, m in sorted(state.members.items(), key=lambda km: km[1].display_name.casefold()):
            verified = ", ".join(sorted(names.get(v, short(v)) for v in m.verified_by)) or "—"
            table.add_row(
                m.display_name, m.kind.replace("_", " "), ", ".join(m.offers) or "—",
                ", ".join(m.needs) or "—", verified, m.status, key=key.hex(),
            )  # fmt: skip
        matches = self.p2p.call(self.p2p.node.matches, self.ref)
        found = [
            f"{names.get(x.member, '?')} needs {x.capability.replace('_', ' ')}: "
            + (
                ", ".join(names.get(k, "?") for k in x.offered_by) + " can bring it"
                if x.offered_by
                else "nobody offers it yet"
            )
            for x in matches[:8]
        ]
        self.query_one("#matches", Static).update(
            "Partner matching: " + ("; ".join(found) or "no need meets an offer yet")
        )

    def _agreements(self, state: NetworkState, names: dict[bytes, str]) -> None:
        table = self.query_one("#agreements-table", DataTable)
        table.clear()
        active = {k for k, m in state.members.items() if m.active}
        for agreement in state.agreements.values():
            current = state.versions.get(agreement.versions[-1]) if agreement.versions else None
            if current is None:
                continue
            endorsed = current.endorsed_by & active
            table.add_row(
                current.title, agreement.kind.replace("_", " "), str(current.number),
                "yes" if agreement.adopted else "no",
                ", ".join(sorted(names.get(k, "?") for k in endorsed)) or "—",
                ", ".join(sorted(names.get(k, "?") for k in active - endorsed)) or "—",
                key=agreement.agreement_id.hex(),
            )  # fmt: skip

    def _decisions(self, state: NetworkState) -> None:
        table = self.query_one("#decisions-table", DataTable)
        table.clear()
        for d in sorted(state.decisions.values(), key=lambda d: (d.status != "open", d.title)):
            latest = {p.member for p in d.positions}
            outcome = d.outcome.outcome if d.outcome else "—"
            table.add_row(
                d.title, d.rule.rule, d.status, f"{len(latest)}/{len(d.electorate)}",
                outcome.replace("_", " "), key=d.decision_id.hex(),
            )  # fmt: skip

    # -- actions ---------------------------------------------------------------------------

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # Keyboard first: the tab's table takes the focus, so arrows and Enter work at once.
        pane = event.pane
        tables = list(pane.query(DataTable)) if pane is not None else []
        if tables:
            tables[0].focus()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        """Keys 1 to 5 switch tabs (keyboard first)."""
        self.query_one(TabbedContent).active = tab

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key is None:
            return
        table = event.data_table.id
        if table == "decisions-table":
            self.app.push_screen(DecisionScreen(self.network_id, bytes.fromhex(key)))
        elif table == "agreements-table":
            self._show_agreement(bytes.fromhex(key))
        elif table == "members-table":
            self._show_member(bytes.fromhex(key))

    def _show_agreement(self, agreement_id: bytes) -> None:
        state = self.state()
        agreement = state.agreements[agreement_id]
        lines = []
        for version_id in reversed(agreement.versions):
            version = state.versions[version_id]
            text = self.p2p.call(self.p2p.node.texts, self.ref, [version_id])
            adopted = "adopted" if version.adopted_by else "not adopted"
            lines += [
                f"Version {version.number}: {version.title} ({adopted})",
                text.get(version_id, {}).get("text", ""),
                "",
            ]
        lines.append(
            "To change it, press r on the agreements list: a new version, and a decision "
            "whether to adopt it."
        )
        self.app.push_screen(ShowText(agreement.kind.replace("_", " ").title(), "\n".join(lines)))

    def _show_member(self, key: bytes) -> None:
        state = self.state()
        m = state.members[key]
        names = {k: x.display_name for k, x in state.members.items()}
        lines = [
            f"Kind: {m.kind.replace('_', ' ')}",
            f"Status: {m.status}",
            f"Offers: {', '.join(m.offers) or '—'}",
            f"Needs: {', '.join(m.needs) or '—'}",
            f"Roles: {', '.join(m.roles) or '—'}",
            "Verified in person by: "
            + (", ".join(sorted(names.get(k, "?") for k in m.verified_by)) or "nobody yet"),
            f"Admitted by: {names.get(m.admitted_by, '—') if m.admitted_by else '—'}",
            f"Key: {key.hex()}",
            "",
            "Press v on the members list to verify this member in person.",
        ]
        self.app.push_screen(ShowText(m.display_name, "\n".join(lines)))

    def _selected(self, table_id: str) -> str | None:
        table = self.query_one(table_id, DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_propose(self) -> None:
        spec = self.state().settings.ordinary_rule
        text = f"{spec.rule}, quorum {spec.quorum.num}/{spec.quorum.den}"
        self.app.push_screen(ProposeForm(text), self._propose)

    def _propose(self, result: NewProposal | None) -> None:
        if result is None:
            return
        from p2pnet.references import parse_rule  # noqa: PLC0415

        node = self.p2p.node

        def propose() -> Any:
            # The network's own rule unless another was chosen: its quorum, threshold and
            # supermajority are what the members agreed, not the form's defaults.
            rule = (
                None
                if result.rule == ProposeForm.NETWORK_RULE
                else parse_rule(result.rule, quorum=result.quorum)
            )
            return node.propose(self.ref, title=result.title, text=result.text, rule=rule)

        if self.p2p.attempt(propose):
            self.app.notify(f"Proposed: {result.title}")
            self.refresh_data()

    def action_invite(self) -> None:
        self.app.push_screen(InviteForm(), self._invite)

    def _invite(self, choice: NewInvite | None) -> None:
        if choice is None:
            return
        code = self.p2p.attempt(
            self.p2p.invite_code, self.network_id, uses=choice.uses, days=choice.days
        )
        if code:
            people = "one person" if choice.uses == 1 else f"{choice.uses} people"
            self.app.push_screen(
                ShowText(
                    f"Invite code ({people}, {choice.days} days)",
                    f"{self.p2p.qr(code)}\n{code}\n\nGive it in person or over a channel you "
                    "trust: whoever holds it can ask to join.",
                )
            )

    def action_revise(self) -> None:
        agreement = self._selected("#agreements-table")
        if agreement is None or self.query_one(TabbedContent).active != "agreements":
            self.app.notify("Open the Agreements tab and select the agreement to revise.")
            return
        state = self.state()
        found = state.agreements[bytes.fromhex(agreement)]
        current = found.versions[-1]
        text = self.p2p.call(self.p2p.node.texts, self.ref, [current]).get(current, {})
        title = state.versions[current].title

        def done(result: NewVersion | None) -> None:
            if result is None:
                return
            node = self.p2p.node

            def revise() -> Any:
                version = node.add_agreement(
                    self.ref, kind=found.kind, title=result.title, text=result.text,
                    agreement=agreement,
                )  # fmt: skip
                return node.propose(
                    self.ref, title=f"Adopt: {result.title}", kind="agreement_adoption",
                    subject=version.op_id,
                )  # fmt: skip

            if self.p2p.attempt(revise):
                self.app.notify("Proposed: the network decides whether to adopt the new version.")
                self.refresh_data()

        self.app.push_screen(ReviseForm(title, str(text.get("text", ""))), done)

    def action_verify(self) -> None:
        member = self._selected("#members-table")
        if member is None or self.query_one(TabbedContent).active != "members":
            self.app.notify("Open the Members tab and select the member to verify.")
            return
        key = bytes.fromhex(member)
        if key == self.p2p.node.identity.public.key:
            self.app.notify("That is you: verify someone else.")
            return
        node, ref = self.p2p.node, self.ref
        name = self.state().members[key].display_name
        digits = self.p2p.call(node.safety_number_with, ref, member)
        words = " ".join(self.p2p.call(node.safety_words, ref, member))
        qr = self.p2p.qr(self.p2p.call(node.verification_qr, ref, member))

        def done(result: str | None) -> None:
            if result and self.p2p.attempt(node.verify_member, ref, member, result):
                self.app.notify(f"Recorded: you verified {name} in person.")
                self.refresh_data()

        self.app.push_screen(VerifyForm(name, digits, words, qr), done)

    def action_endorse(self) -> None:
        agreement = self._selected("#agreements-table")
        if agreement is None or self.query_one(TabbedContent).active != "agreements":
            self.app.notify("Open the Agreements tab and select an agreement to endorse.")
            return
        if self.p2p.attempt(self.p2p.node.endorse, self.ref, agreement):
            self.app.notify("Endorsed.")
            self.refresh_data()

    def action_verify_log(self) -> None:
        report = self.p2p.attempt(self.p2p.node.log_check, self.ref)
        if report is None:
            return
        self._verified = [
            "",
            f"{'Verified' if report.ok else 'PROBLEMS FOUND'} at "
            f"{time.strftime('%H:%M:%S')}: {len(report.decisions)} closed decision(s) "
            f"recomputed from {report.ops} signed ops",
            *(str(p) for p in report.problems),
        ]
        self._log(self.state())
        self.query_one(TabbedContent).active = "log"


class DecisionScreen(BaseScreen):
    """A decision: rule, quorum, live tally, positions with reasons, comments."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("s", "position", "Take a position"),
        Binding("c", "close", "Close"),
        Binding("o", "comment", "Comment"),
    ]

    def __init__(self, network_id: bytes, decision_id: bytes) -> None:
        super().__init__()
        self.network_id = network_id
        self.ref = network_id.hex()
        self.decision_id = decision_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(NOTICE, classes="notice")
        # Never markup: what members wrote is shown as it is.
        yield VerticalScroll(Static("", id="detail", markup=False))
        with Horizontal(id="comment-row"):
            yield Input(placeholder="Write a comment and press Enter", id="comment")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_data()

    def decision(self) -> tuple[Decision, NetworkState]:
        state: NetworkState = self.p2p.call(self.p2p.node.state, self.ref)
        return state.decisions[self.decision_id], state

    def refresh_data(self) -> None:
        d, state = self.decision()
        names = {k: m.display_name for k, m in state.members.items()}
        node = self.p2p.node
        texts = self.p2p.call(node.texts, self.ref, [d.decision_id])
        text = texts.get(d.decision_id, {}).get("text", "")
        latest: dict[bytes, Any] = {}
        for p in d.positions:
            latest[p.member] = p
        reasons = self.p2p.call(node.texts, self.ref, [p.op_id for p in latest.values()])
        lines = [
            f"{d.title}  ({d.status})",
            f"Rule: {rule_text(d.rule)}; quorum {d.rule.quorum.num}/{d.rule.quorum.den}",
            f"Closes: {time.strftime('%Y-%m-%d %H:%M', time.localtime(d.closes_at / 1000))}",
            "",
            text or "(no text)",
            "",
            "Positions",
        ]
        for member, p in latest.items():
            reason = reasons.get(p.op_id, {}).get("reason", "")
            lines.append(f"  {names.get(member, short(member))}: {p.stance}"
                         + (f" — {reason}" if reason else ""))  # fmt: skip
        if not latest:
            lines.append("  none yet")
        if d.status == "open":
            projected = self.p2p.attempt(node.projected_outcome, self.ref, d.decision_id.hex())
            if projected:
                lines += ["", f"If closed now: {projected.get('outcome', '?')}"]
        elif d.outcome is not None:
            lines += ["", f"Outcome: {d.outcome.outcome}"]
        comment_ids = state.comments.get(d.decision_id, ())
        comments = self.p2p.call(node.texts, self.ref, list(comment_ids))
        lines += ["", "Comments"]
        for cid in comment_ids:
            c = comments.get(cid, {})
            author = names.get(c.get("author", b""), "?")
            lines.append(f"  {author}: {c.get('text', '')}")
        if not comment_ids:
            lines.append("  none yet")
        self.query_one("#detail", Static).update("\n".join(lines))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_position(self) -> None:
        d, _state = self.decision()
        if d.status != "open":
            self.app.notify(
                f"This decision is {d.status}: positions are closed.", severity="warning"
            )
            return
        self.app.push_screen(PositionForm(d.title, d.rule.rule), self._position)

    def _position(self, result: NewPosition | None) -> None:
        if result is None:
            return
        node = self.p2p.node
        if self.p2p.attempt(
            node.position, self.ref, self.decision_id.hex(), result.stance, result.reason
        ):
            self.app.notify(f"Recorded: {result.stance}")
            self.refresh_data()

    def action_close(self) -> None:
        d, _state = self.decision()
        if d.status != "open":
            self.app.notify(f"This decision is already {d.status}.", severity="warning")
            return
        node = self.p2p.node
        projected = self.p2p.attempt(node.projected_outcome, self.ref, d.decision_id.hex())
        outcome = projected.get("outcome", "?") if projected else "?"

        def done(yes: bool | None) -> None:
            if yes and self.p2p.attempt(node.close_decision, self.ref, d.decision_id.hex()):
                self.app.notify(f"Closed: {outcome}")
                self.refresh_data()

        self.app.push_screen(
            ConfirmForm(
                "Close this decision?",
                f"The outcome recorded will be: {outcome}. Every member's node recomputes "
                "it; a close cannot be undone.",
                "Close it",
            ),
            done,
        )

    def action_comment(self) -> None:
        self.query_one("#comment", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.app.notify("Write something first.", severity="warning")
            return
        if self.p2p.attempt(self.p2p.node.comment, self.ref, self.decision_id.hex(), text):
            event.input.value = ""
            self.refresh_data()
