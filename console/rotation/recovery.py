"""After a crash: the run's journal read back, the new value found again where it was
delivered, the old value where a versioned target kept it."""

from __future__ import annotations

from console.rotation.run import (
    Run,
    StepFailed,
    done,
    fingerprints_of,
)
from rotators.base import (
    RotatorError,
    Value,
)


class Recovery:
    def _new_value(self, run: Run, step: str) -> Value:
        if run.new_value is not None:
            return run.new_value
        found: Value = {}
        for target in run.targets:
            expected = {p: fp for p, fp in run.new_fps.items() if p in target.fields}
            if not expected:
                continue
            try:
                hit = target.find_delivered(expected)
            except RotatorError:
                hit = None
            if hit:
                found.update(hit[1])
        if run.new_fps and set(found) >= set(run.new_fps):
            run.new_value = found
            return found
        if not run.new_fps:  # a whole rotator: it keeps its own state
            run.new_value = {}
            return run.new_value
        raise StepFailed(step, "the new value was lost with the process before it was "
                                "delivered anywhere")

    def _recover_old_values(self, run: Run) -> None:
        for i, target in enumerate(run.targets):
            if run.old_values.get(i):
                continue
            try:
                value = target.read_previous(run.delivered.get(i, {}))
            except RotatorError:
                value = None
            if value and fingerprints_of(run, value) == run.old_fps.get(i):
                run.old_values[i] = value

    def _old_for(self, run: Run, i: int) -> Value | None:
        if run.old_values.get(i):
            return run.old_values[i]
        self._recover_old_values(run)
        if run.old_values.get(i):
            return run.old_values[i]
        wanted = run.old_fps.get(i)
        for value in run.old_values.values():  # another target held the same old value
            if value and wanted and fingerprints_of(run, value) == wanted:
                return value
        return None

    def _still_old(self, run: Run, i: int, steps: dict[str, dict]) -> bool:
        """A deliver that was journaled as started but never finished may not have reached
        its target at all (killed first): a target still holding the old value needs no
        restore, which matters where the old value was not kept (an env file)."""
        if done(steps, f"deliver:{i}") or not run.old_fps.get(i):
            return False
        try:
            current = run.targets[i].read()
        except RotatorError:
            return False
        return bool(current) and fingerprints_of(run, current) == run.old_fps[i]

    def _touched(self, run: Run, steps: dict[str, dict]) -> list[int]:
        """Targets a deliver may have reached (started, whether or not it finished)."""
        return [i for i in range(len(run.targets)) if f"deliver:{i}" in steps]

    def _load_journal(self, run: Run) -> None:
        steps = self._latest(run.run_id)
        ident = (steps.get("identify") or {}).get("detail") or {}
        run.old_handle = dict(ident.get("old") or {})
        run.old_fps = {int(k): v for k, v in (ident.get("old_fingerprints") or {}).items()}
        issue = (steps.get("issue") or {}).get("detail") or {}
        if done(steps, "issue"):
            run.new_handle = dict(issue.get("handle") or {})
            run.new_fps = dict(issue.get("fingerprints") or {})
        for i in range(len(run.targets)):
            row = steps.get(f"deliver:{i}")
            if row and row["status"] == "done":
                run.delivered[i] = dict((row.get("detail") or {}).get("handle") or {})
        # targets never delivered to still hold the old value
        for i, target in enumerate(run.targets):
            if f"deliver:{i}" not in steps:
                try:
                    value = target.read()
                except RotatorError:
                    value = None
                if value and fingerprints_of(run, value) == run.old_fps.get(i):
                    run.old_values[i] = value
