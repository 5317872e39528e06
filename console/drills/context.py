"""What one drill run holds while it runs: the world, the drill store, the attacker's stolen
copies (in memory only), the skips, and the consumer probe loop."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.drills.model import Scenario, Step
    from console.drills.world import DrillWorld, Item
    from console.store import Store

ACTOR = "drill-responder"
ATTACKER = "drill-attacker"


@dataclass
class Attacker:
    """The attacker's loot: credential name -> the values it copied. Held in this object only:
    never written, logged or reported (its repr hides it)."""

    stolen: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"Attacker(holding {len(self.stolen)} stolen value(s))"


@dataclass
class Drill:
    scenario: Scenario
    world: DrillWorld
    store: Store
    audit: AuditLog
    loaded: LoadedInventory
    skip: set[str] = field(default_factory=set)
    attacker: Attacker = field(default_factory=Attacker)
    injected_at: datetime | None = None
    incident_id: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # what injections tell checks
    probe: Probe | None = None

    def items_for(self, step: Step) -> list[Item]:
        """The credentials a step names: one (credential), an agent's, an owner's, else all."""
        items = list(self.world.items.values())
        if step.credential:
            return [self.world.items[step.credential]]
        if step.agent:
            return [i for i in items if i.agent == step.agent]
        if step.owner:
            agents = {a for a, rec in self.world.agents.items() if rec["owner"] == step.owner}
            return [i for i in items if i.owner == step.owner or i.agent in agents]
        return items

    def progress(self, step: str, status: str, message: str = "") -> None:
        """The rotation engine's progress callback: probes consumers after each step."""
        if self.probe is not None:
            self.probe.after_step(step, status)

    def engine(self) -> Any:
        from console.rotation import RotationEngine

        return RotationEngine(self.store, self.audit, self.loaded)

    def reload(self) -> None:
        from console.config import load_inventory

        self.loaded = load_inventory(self.world.inventory_path)


class Probe:
    """Consumers probed while the responder works: each round reads every probed credential
    where its agent reads it and calls its issuer. A thread probes every ``interval``; and the
    rotation engine's progress calls ``after_step`` once each step of a rotation ends, so a
    window between two steps (revoked before delivered) is probed however short it is."""

    def __init__(self, items: list[Item], interval: float = 0.05) -> None:
        self.items = items
        self.interval = interval
        self.rounds = 0
        self.failures: dict[str, int] = {i.name: 0 for i in items}
        # the engine steps a round ran right after: (step, failed probes in that round)
        self.steps: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drill-probe", daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def _round(self) -> int:
        with self._lock:  # the thread's round and a step's round never interleave
            failed = 0
            for item in self.items:
                if not item.consumer():
                    self.failures[item.name] += 1
                    failed += 1
            self.rounds += 1
            return failed

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._round()
            self._stop.wait(self.interval)

    def after_step(self, step: str, status: str) -> None:
        """A rotation step ended (done, failed, waiting): probe before the next one starts."""
        if self._stop.is_set() or status not in ("done", "failed", "waiting"):
            return
        self.steps.append((step if status == "done" else f"{step} ({status})", self._round()))

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=30)
        return {"rounds": self.rounds, "failures": dict(self.failures),
                "failed": sum(self.failures.values()),
                "after_steps": [s for s, _ in self.steps],
                "failed_after": {s: n for s, n in self.steps if n}}
