"""Reach as a tree, either way round.

From an agent: agent → identity → policy → rule → credential, each credential marked used
(evidence of use through that grant) or unused. From a credential: credential → agent →
identity → policy → rule, every holder. The links are the grant chains sync recorded
(console/model.Grant.chain); a chain of another shape (declared, keyring) shows as it is.
Enter on a credential opens its detail.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static, Tree

from console.model import Grant
from screens.base import KeyshiftScreen
from screens.theme import state_style
from screens.widgets.header import HeaderBar


def _links(grant: Grant, skip_agent: bool) -> list[str]:
    chain = list(grant.chain)
    if skip_agent and chain and chain[0].startswith("agent:"):
        chain = chain[1:]
    return chain or ["(no chain recorded)"]


class ReachScreen(KeyshiftScreen):
    HOSTS = (Tree,)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open credential", id="reach.open"),
        Binding("e", "expand_all", "Expand all", id="reach.expand"),
        Binding("E", "collapse_all", "Collapse", id="reach.collapse"),
    ]

    def __init__(self, *, agent: str | None = None, credential: str | None = None) -> None:
        super().__init__()
        if (agent is None) == (credential is None):
            raise ValueError("a reach tree starts from an agent or from a credential")
        self.agent = agent
        self.credential = credential
        self.grants: list[Grant] = []
        self.labels: dict[str, dict] = {}

    @property
    def crumb(self) -> str:
        return f"agent {self.agent}" if self.agent else "holders"

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        tree: Tree[Any] = Tree(self.agent or self.credential or "", id="reach")
        tree.show_root = True
        yield tree
        yield Static(id="status")

    def on_mount(self) -> None:
        self.query_one("#reach", Tree).focus()
        self.query_one("#status", Static).update(Text(" reading …", style="dim"))
        self._read()

    @work(thread=True, exclusive=True, group="reach")
    def _read(self) -> None:
        store = self.ks.store
        try:
            if self.agent is not None:
                grants = store.grants_for_agent(self.agent)
            else:
                grants = store.grants_for_credential(self.credential or "")
            ids = [g.credential_id for g in grants] + ([self.credential] if self.credential else [])
            labels = store.credential_labels([i for i in ids if i])
        except Exception as exc:
            self.fail_from_thread(exc)
            return
        self.app.call_from_thread(self._show, grants, labels)

    def _label(self, cred_id: str) -> Text:
        info = self.labels.get(cred_id)
        if info is None:
            return Text(f"{cred_id} (not in the store)", style=state_style(self.app, "warning"))
        text = Text(info["name"], style="bold")
        text.append(f"  {cred_id}", style="dim")
        if info["gone"]:
            text.stylize(state_style(self.app, "gone"))
        return text

    def _use(self, grant: Grant) -> Text:
        # first on the line, fixed width: a long id may be cut at the edge, the mark never
        if grant.used:
            return Text("✓ used  ", style=state_style(self.app, "used"))
        return Text("unused  ", style=state_style(self.app, "unused"))

    def _show(self, grants: list[Grant], labels: dict[str, dict]) -> None:
        if not self.alive:
            return
        self.grants, self.labels = grants, labels
        tree = self.query_one("#reach", Tree)
        tree.clear()
        app = self.app
        if self.agent is not None:
            tree.root.set_label(Text(f"agent {self.agent}", style="bold"))
            for grant in sorted(grants, key=lambda g: (g.chain, g.credential_id)):
                node = tree.root
                for link in _links(grant, skip_agent=True):
                    node = self._child(node, link)
                leaf = self._use(grant)
                leaf.append_text(self._label(grant.credential_id))
                node.add_leaf(leaf, data=grant.credential_id)
            used = sum(1 for g in grants if g.used)
            summary = f" {len({g.credential_id for g in grants})} credentials reachable through "
            summary += f"{len(grants)} grants; {used} used, {len(grants) - used} unused"
        else:
            cred = self.credential or ""
            tree.root.set_label(self._label(cred))
            tree.root.data = cred
            for grant in sorted(grants, key=lambda g: (g.agent, g.chain)):
                node = self._child(tree.root, f"agent:{grant.agent}")
                links = _links(grant, skip_agent=True)
                for link in links[:-1]:
                    node = self._child(node, link)
                last = self._use(grant)
                last.append(links[-1])
                node.add_leaf(last)
            holders = len({g.agent for g in grants})
            summary = f" {holders} agents hold {len(grants)} grants to it"
        if not grants:
            tree.root.add_leaf(Text("no grants recorded", style=state_style(app, "muted")))
        tree.root.expand_all()
        self.query_one("#status", Static).update(Text(summary if grants else " no grants"))

    def _child(self, node: Any, label: str) -> Any:
        for child in node.children:
            if str(child.label) == label:
                return child
        return node.add(label)

    def action_open(self) -> None:
        tree = self.query_one("#reach", Tree)
        node = tree.cursor_node
        if node is None or not isinstance(node.data, str) or node.data not in self.labels:
            if node is not None and node.allow_expand:
                node.toggle()
            return
        from screens.detail import DetailScreen

        self.app.push_screen(DetailScreen(node.data))

    @on(Tree.NodeSelected, "#reach")
    def _selected(self, event: Tree.NodeSelected) -> None:
        if isinstance(event.node.data, str):
            event.stop()
            self.action_open()

    def action_expand_all(self) -> None:
        self.query_one("#reach", Tree).root.expand_all()

    def action_collapse_all(self) -> None:
        root = self.query_one("#reach", Tree).root
        root.collapse_all()
        root.expand()
