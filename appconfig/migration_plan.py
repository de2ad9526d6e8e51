"""The file's migration section applied: the plan, its phases in order, each phase's services.

The file says which phases there are, in what order, and which services each moves; people
move the phases' states (clusters/migration.py), so a load never changes a state and a new
phase is created planned. What a phase beyond planned has started is not the file's to undo:
a load is refused, naming the phase and the service, when it would move a service into or
out of such a phase, remove or reorder such a phase, or remove the plan while it has one.
Phases are matched by name, so renaming a phase is removing one and adding another.

MigrationChange.of reads and locks the plan and says what would be refused; apply makes the
change and reports it, after the file's services exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clusters.models import MigrationPhase, MigrationPlan, MigrationState, Service
from deploys.models import Application

from .schema import AppConfig, MigrationConfig

_ONLY_PLANNED = "only a planned phase's services and place change with the file"


def _phase(phase: MigrationPhase) -> str:
    return f"phase {phase.position} ({phase.name}), which is {phase.get_state_display().lower()}"


def _started(phase: MigrationPhase) -> bool:
    return phase.state != MigrationState.PLANNED


@dataclass
class MigrationChange:
    """What the file's migration section changes, and what it may not."""

    application: Application
    wanted: MigrationConfig | None
    plan: MigrationPlan | None
    phases: dict[str, MigrationPhase]  # the plan's phases now, by name, locked
    current: dict[str, str | None]  # each existing service's phase now, by service name
    refusals: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls, config: AppConfig, application: Application, services: dict[str, Service]
    ) -> MigrationChange:
        plan = MigrationPlan.objects.select_for_update().filter(application=application).first()
        phases = {}
        if plan is not None:
            # Locked as clusters.migration.move locks them, so no move passes while we load.
            locked = MigrationPhase.objects.select_for_update().filter(plan=plan)
            phases = {p.name: p for p in locked.order_by("position")}
        by_id = {p.pk: p.name for p in phases.values()}
        current = {name: by_id.get(s.migration_phase_id) for name, s in services.items()}
        change = cls(application, config.migration, plan, phases, current)
        change.refusals = change._refusals()
        return change

    def wanted_phase_of(self) -> dict[str, str]:
        if self.wanted is None:
            return {}
        return {name: phase.name for phase in self.wanted.phases for name in phase.services}

    def _refusals(self) -> list[str]:
        started = [p for p in self.phases.values() if _started(p)]
        if self.wanted is None:
            if not started:
                return []
            return [
                "migration: the plan cannot be removed while "
                + " and ".join(_phase(p) for p in started)
                + f" ({_ONLY_PLANNED}): keep the migration section"
            ]
        refusals = []
        positions = {phase.name: n for n, phase in enumerate(self.wanted.phases, start=1)}
        for phase in started:
            if phase.name not in positions:
                refusals.append(
                    f"migration.phases: {_phase(phase)}, cannot be removed ({_ONLY_PLANNED}): "
                    "keep it in the file"
                )
            elif positions[phase.name] != phase.position:
                refusals.append(
                    f"migration.phases[{positions[phase.name] - 1}]: {_phase(phase)}, must stay "
                    f"phase {phase.position}, not become phase {positions[phase.name]} "
                    f"({_ONLY_PLANNED})"
                )
        wanted = self.wanted_phase_of()
        paths = {
            name: f"migration.phases[{n}].services[{m}]"
            for n, phase in enumerate(self.wanted.phases)
            for m, name in enumerate(phase.services)
        }
        for service, now in sorted(self.current.items()):
            then = wanted.get(service)
            if now == then:
                continue
            if now is not None and now in positions and _started(self.phases[now]):
                refusals.append(
                    f"{paths.get(service, f'migration.phases[{positions[now] - 1}]')}: service "
                    f"{service!r} cannot leave {_phase(self.phases[now])} ({_ONLY_PLANNED})"
                )
            if then is not None and then in self.phases and _started(self.phases[then]):
                refusals.append(
                    f"{paths[service]}: service {service!r} cannot join "
                    f"{_phase(self.phases[then])} ({_ONLY_PLANNED})"
                )
        for service, then in wanted.items():  # services new to the database
            if service not in self.current and then in self.phases:
                if _started(self.phases[then]):
                    refusals.append(
                        f"{paths[service]}: service {service!r} cannot join "
                        f"{_phase(self.phases[then])} ({_ONLY_PLANNED})"
                    )
        return refusals

    def apply(self, services: dict[str, Service], listed: set[str], report) -> None:
        """Make the change (the refusals are empty). services holds every service by name,
        listed the names of those in the file (the others are about to be removed)."""
        assert not self.refusals
        if self.wanted is None:
            if self.plan is not None:
                Service.objects.filter(migration_phase__plan=self.plan).update(migration_phase=None)
                self.plan.delete()
                report.removed.append(f"migration plan ({len(self.phases)} phase(s))")
            return
        plan = self._apply_plan(report)
        phases, created = self._apply_phases(plan, report)
        wanted = self.wanted_phase_of()
        for name, service in services.items():
            phase = phases.get(wanted.get(name))
            if service.migration_phase_id == (phase.pk if phase else None):
                continue
            service.migration_phase = phase
            service.save(update_fields=["migration_phase"])
            before = self.current.get(name)
            if name not in listed or (phase is not None and phase.name in created):
                continue  # said by the service's removal, or by the new phase's line
            report.updated.append(
                f"service {name}: migration phase {repr(before) if before else 'none'} -> "
                f"{repr(phase.name) if phase else 'none'}"
            )

    def _apply_plan(self, report) -> MigrationPlan:
        values = {
            "proof_deploys": self.wanted.proof_deploys,
            "proof_hours": self.wanted.proof_hours,
        }
        if self.plan is None:
            report.created.append(
                f"migration plan (proof: {values['proof_deploys']} deploys and "
                f"{values['proof_hours']} h)"
            )
            return MigrationPlan.objects.create(application=self.application, **values)
        changes = []
        for name, value in values.items():
            if getattr(self.plan, name) != value:
                key = name.replace("proof_", "proof.")
                changes.append((name, f"{key} {getattr(self.plan, name)} -> {value}"))
                setattr(self.plan, name, value)
        if changes:
            self.plan.save(update_fields=[name for name, _ in changes])
            report.updated.append("migration plan: " + "; ".join(text for _, text in changes))
        return self.plan

    def _apply_phases(self, plan: MigrationPlan, report) -> tuple[dict[str, MigrationPhase], set]:
        """The plan's phases by name once the file's are made, and the names of the new ones."""
        kept = {phase.name for phase in self.wanted.phases}
        removed = [p for name, p in self.phases.items() if name not in kept]
        if removed:
            # Their services are set again below; PROTECT keeps a phase with services.
            Service.objects.filter(migration_phase__in=removed).update(migration_phase=None)
            for phase in removed:
                phase.delete()
                report.removed.append(f"migration phase {phase.name}")
        # Two steps, so that no two phases hold one position at any moment (a unique pair).
        wanted_positions = {p.name: n for n, p in enumerate(self.wanted.phases, start=1)}
        moving = [
            p
            for name, p in self.phases.items()
            if name in kept and p.position != wanted_positions[name]
        ]
        top = max([p.position for p in self.phases.values()] + [len(self.wanted.phases)])
        for n, phase in enumerate(moving, start=1):
            MigrationPhase.objects.filter(pk=phase.pk).update(position=top + n)
        for phase in moving:
            new = wanted_positions[phase.name]
            report.updated.append(
                f"migration phase {phase.name}: position {phase.position} -> {new}"
            )
            phase.position = new
            phase.save(update_fields=["position"])
        phases = {name: p for name, p in self.phases.items() if name in kept}
        created = set()
        for position, wanted in enumerate(self.wanted.phases, start=1):
            if wanted.name in phases:
                continue
            created.add(wanted.name)
            phases[wanted.name] = MigrationPhase.objects.create(
                plan=plan, position=position, name=wanted.name, state=MigrationState.PLANNED
            )
            report.created.append(
                f"migration phase {position} {wanted.name} (planned): " + ", ".join(wanted.services)
            )
        return phases, created
