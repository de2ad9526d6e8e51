"""Make the database say what an application config file says, in one transaction.

The file is the truth for what it says:

- the application's settings it gives are set; the ones it leaves out are left alone;
- the clusters it lists are created or updated by name (clusters are shared between
  applications, so a cluster is never removed by a file);
- its services and their placements are the whole list: what the file does not list is
  removed, except a placement with rollouts in its history, which is refused.

Everything or nothing: a refusal raises ConfigError with nothing changed. The ApplyReport
says what was created, updated and removed; a dry run makes the changes and rolls them
back, so its report is what a load would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Count, ProtectedError

from clusters.models import Cluster, ClusterKind, Placement, PlacementKind, Service
from clusters.placement_guard import uses_of
from deploys.models import Application
from lib.urls import has_credentials

from .errors import ConfigError
from .migration_plan import MigrationChange
from .schema import (
    APPLICATION_FIELDS,
    DOCKER_DURATIONS,
    AppConfig,
    PlacementConfig,
    ServiceConfig,
    format_duration,
)


@dataclass
class ApplyReport:
    application: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)

    def lines(self) -> list[str]:
        if not self.changed:
            head = f"{self.application}: unchanged"
        else:
            counts = (
                f"{len(self.created)} created, {len(self.updated)} updated, "
                f"{len(self.removed)} removed"
            )
            head = f"{self.application}: {counts}"
        if self.dry_run:
            head += " (dry run: nothing was written)"
        lines = [head]
        lines += [f"  created {item}" for item in self.created]
        lines += [f"  updated {item}" for item in self.updated]
        lines += [f"  removed {item}" for item in self.removed]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _show(kind: str, value: Any) -> str:
    if kind in ("positive_duration", "duration"):
        return format_duration(value)
    if kind == "minutes":
        return format_duration(value * 60)
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _describe_placement(placement: Placement) -> str:
    if placement.kind == PlacementKind.LEGACY:
        where = f"legacy job {placement.legacy_job or '(none)'}"
    elif placement.kind == PlacementKind.DOCKER:
        where = f"docker host {placement.cluster.name if placement.cluster_id else '(none)'}"
    else:
        cluster = placement.cluster.name if placement.cluster_id else "(no cluster)"
        where = f"{cluster}/{placement.ecs_service_name or '(no ECS service)'}"
    return f"{placement.service.name} on {where}"


def _placement_key(placement: Placement) -> tuple | None:
    """What a placement is matched by; None when no file could name it."""
    if placement.kind == PlacementKind.ECS and placement.cluster_id and placement.ecs_service_name:
        return ("ecs", placement.cluster.name, placement.ecs_service_name)
    if placement.kind == PlacementKind.LEGACY and placement.legacy_job:
        return ("legacy", placement.service.name, placement.legacy_job)
    if placement.kind == PlacementKind.DOCKER and placement.cluster_id:
        return ("docker", placement.service.name, placement.cluster.name)
    return None


def _config_key(service: ServiceConfig, placement: PlacementConfig) -> tuple:
    if placement.kind == PlacementKind.ECS:
        return ("ecs", placement.cluster, placement.ecs_service)
    if placement.kind == PlacementKind.DOCKER:
        return ("docker", service.name, placement.cluster)
    return ("legacy", service.name, placement.legacy_job)


def apply_app_config(
    config: AppConfig, *, create: bool = False, dry_run: bool = False
) -> ApplyReport:
    """Make the database say what the file says, in one transaction; return what changed.

    Raises ConfigError, with nothing changed, when the application does not exist (unless
    create), or when the file would remove a placement that has rollouts. With dry_run the
    changes are made and rolled back, so the report says what would change.
    """
    report = ApplyReport(application=config.slug, warnings=list(config.warnings), dry_run=dry_run)
    with transaction.atomic():
        _apply(config, create, report)
        if dry_run:
            transaction.set_rollback(True)
    return report


def _apply(config: AppConfig, create: bool, report: ApplyReport) -> None:
    application = _apply_application(config, create, report)
    clusters = _apply_clusters(config, application, report)

    errors = []
    services = {s.name: s for s in application.services.order_by("id")}
    existing = list(
        Placement.objects.filter(service__application=application)
        .select_related("cluster", "service")
        .order_by("id")
    )
    by_key: dict[tuple, Placement] = {}
    unmatched: list[Placement] = []
    for placement in existing:
        key = _placement_key(placement)
        if key is None or key in by_key:
            unmatched.append(placement)
        else:
            by_key[key] = placement

    # Another application's ECS service is not this file's to take.
    targets = {
        (p.cluster, p.ecs_service): (n, m)
        for n, s in enumerate(config.services)
        for m, p in enumerate(s.placements)
        if p.kind == PlacementKind.ECS
    }
    if targets:
        taken = (
            Placement.objects.filter(
                kind=PlacementKind.ECS,
                cluster__name__in={c for c, _ in targets},
                ecs_service_name__in={e for _, e in targets},
            )
            .exclude(service__application=application)
            .select_related("cluster", "service__application")
        )
        for other in taken:
            where = targets.get((other.cluster.name, other.ecs_service_name))
            if where:
                errors.append(
                    f"services[{where[0]}].placements[{where[1]}]: "
                    f"{other.cluster.name}/{other.ecs_service_name} is already a placement of "
                    f"{other.service.application.slug}'s service {other.service.name!r}"
                )

    plan: list[tuple[ServiceConfig, PlacementConfig, Placement | None]] = []
    for service in config.services:
        for placement in service.placements:
            plan.append((service, placement, by_key.pop(_config_key(service, placement), None)))
    doomed = unmatched + list(by_key.values())
    wanted_names = {s.name for s in config.services}
    doomed_services = [s for name, s in services.items() if name not in wanted_names]

    # A placement in use keeps its kind and target: the file cannot remove it (a change of
    # kind or target is a removal and a new placement) nor move it to another service.
    moved = [p for s, _w, p in plan if p is not None and p.service.name != s.name]
    uses = uses_of(doomed + moved)
    for placement in doomed + moved:
        reasons = uses[placement.pk].reasons(planned_too=False)
        if reasons:
            what = "removed" if placement in doomed else "moved to another service"
            errors.append(
                f"placement {_describe_placement(placement)} cannot be {what} while "
                + " and ".join(reasons)
                + ": keep it in the file as it is"
            )
    guarded = {p.pk for p in doomed + moved if uses[p.pk].reasons(planned_too=False)}
    if doomed:
        with_history = (
            Placement.objects.filter(pk__in=[p.pk for p in doomed if p.pk not in guarded])
            .annotate(rollouts_count=Count("rollouts"))
            .filter(rollouts_count__gt=0)
        )
        counts = {p.pk: p.rollouts_count for p in with_history}
        for placement in doomed:
            if placement.pk in counts:
                gone = (
                    f" (its service {placement.service.name!r} is not in the file)"
                    if placement.service.name not in wanted_names
                    else ""
                )
                errors.append(
                    f"placement {_describe_placement(placement)} has {counts[placement.pk]} "
                    f"rollout(s) in its deploy history and cannot be removed{gone}: "
                    "keep it in the file"
                )
    migration = MigrationChange.of(config, application, services)
    errors += migration.refusals
    if errors:
        raise ConfigError(errors)

    for service in config.services:
        _apply_service(application, service, services, report)
    for service, wanted, placement in plan:
        _apply_placement(services[service.name], wanted, placement, clusters, report)
    migration.apply(services, wanted_names, report)
    try:
        for placement in doomed:
            report.removed.append(f"placement {_describe_placement(placement)}")
            placement.delete()
        for service in doomed_services:
            report.removed.append(f"service {service.name}")
            service.delete()
    except ProtectedError as exc:  # a rollout made since the check
        raise ConfigError([f"cannot remove what the file leaves out: {exc.args[0]}"]) from None


def _apply_application(config: AppConfig, create: bool, report: ApplyReport) -> Application:
    values = config.application_values()
    application = Application.objects.select_for_update().filter(slug=config.slug).first()
    if application is None:
        if not create:
            raise ConfigError(
                [f"application: no application {config.slug!r}; load with --create to create it"]
            )
        if not values.get("git_remote_url"):
            raise ConfigError(["git_remote: required to create the application"])
        values.setdefault("name", config.slug)
        application = Application.objects.create(slug=config.slug, **values)
        report.created.append(f"application {config.slug}")
        return application
    changes = []
    for path, name, kind in APPLICATION_FIELDS:
        if name in values and getattr(application, name) != values[name]:
            old = getattr(application, name)
            changes.append((name, f"{path} {_show(kind, old)} -> {_show(kind, values[name])}"))
            setattr(application, name, values[name])
    if changes:
        application.save(update_fields=[name for name, _ in changes])
        report.updated.append(
            f"application {config.slug}: " + "; ".join(text for _, text in changes)
        )
    return application


def _apply_clusters(config: AppConfig, application: Application, report) -> dict[str, Cluster]:
    existing = {
        c.name: c for c in Cluster.objects.select_for_update().filter(name__in=config.clusters)
    }
    for name, wanted in config.clusters.items():
        if wanted.docker_host and has_credentials(wanted.docker_host):
            raise ConfigError(
                [f"clusters.{name}.docker_host: must not carry credentials (TLS comes from the "
                 "environment)"]
            )  # fmt: skip
        cluster = existing.get(name)
        if cluster is None:
            cluster = Cluster(name=name, kind=wanted.kind, docker_host=wanted.docker_host or "")
            for attribute in ("region", "arn", "drain_disconnected", "reserved_memory_minimum"):
                if getattr(wanted, attribute) is not None:
                    setattr(cluster, attribute, getattr(wanted, attribute))
            cluster.save()
            existing[name] = cluster
            where = f"docker host {cluster.docker_host}" if wanted.docker_host else cluster.region
            report.created.append(f"cluster {name} ({where})")
            continue
        changes = []
        if cluster.kind != wanted.kind:
            _refuse_kind_change(cluster, wanted, application)
            changes.append(("kind", f"kind {cluster.kind} -> {wanted.kind}"))
            cluster.kind = wanted.kind
            if not wanted.docker_host and cluster.docker_host:
                changes.append(("docker_host", f"docker_host {cluster.docker_host!r} -> ''"))
                cluster.docker_host = ""
        for attribute in (
            "region",
            "arn",
            "docker_host",
            "drain_disconnected",
            "reserved_memory_minimum",
        ):
            value = getattr(wanted, attribute)
            if value is not None and getattr(cluster, attribute) != value:
                changes.append(
                    (attribute, f"{attribute} {getattr(cluster, attribute)!r} -> {value!r}")
                )
                setattr(cluster, attribute, value)
        if changes:
            cluster.save(update_fields=[attribute for attribute, _ in changes])
            others = sorted(
                set(
                    Placement.objects.filter(cluster=cluster)
                    .exclude(service__application=application)
                    .values_list("service__application__slug", flat=True)
                )
            )
            shared = f" (also used by {', '.join(others)})" if others else ""
            report.updated.append(
                f"cluster {name}: " + "; ".join(text for _, text in changes) + shared
            )
    return existing


_KIND_WORDS = {ClusterKind.ECS: "an ECS cluster", ClusterKind.DOCKER: "a Docker host"}


def _refuse_kind_change(cluster: Cluster, wanted, application: Application) -> None:
    """A cluster other applications place services on keeps its kind: their placements
    would point at an ECS cluster that had become a Docker host, or the other way round."""
    others = sorted(
        set(
            Placement.objects.filter(cluster=cluster)
            .exclude(service__application=application)
            .values_list("service__application__slug", flat=True)
        )
    )
    if others:
        raise ConfigError(
            [
                f"clusters.{cluster.name}: is {_KIND_WORDS[cluster.kind]} that "
                f"{', '.join(others)} also place services on, so it cannot become "
                f"{_KIND_WORDS[wanted.kind]}: give the new one another name"
            ]
        )


def _apply_service(application, wanted: ServiceConfig, services: dict, report) -> None:
    fields = {
        "process_type": wanted.process_type,
        "phase": wanted.phase,
        "health_check_url": wanted.health_check_url,
    }
    service = services.get(wanted.name)
    if service is None:
        services[wanted.name] = Service.objects.create(
            application=application, name=wanted.name, **fields
        )
        report.created.append(
            f"service {wanted.name} ({wanted.process_type}, phase {wanted.phase})"
        )
        return
    changes = []
    for name, value in fields.items():
        if getattr(service, name) != value:
            changes.append(
                (name, f"{name} {_show('', getattr(service, name))} -> {_show('', value)}")
            )
            setattr(service, name, value)
    if changes:
        service.save(update_fields=[name for name, _ in changes])
        report.updated.append(f"service {wanted.name}: " + "; ".join(t for _, t in changes))


def _apply_placement(service, wanted: PlacementConfig, placement, clusters, report) -> None:
    fields = {
        "service": service,
        "kind": wanted.kind,
        "cluster": clusters[wanted.cluster] if wanted.kind != PlacementKind.LEGACY else None,
        "ecs_service_name": wanted.ecs_service,
        "container_name": wanted.container,
        "legacy_job": wanted.legacy_job,
        "legacy_version": wanted.legacy_version,
        "docker_config": wanted.docker_config if wanted.kind == PlacementKind.DOCKER else {},
    }
    if placement is None:
        placement = Placement.objects.create(**fields)
        report.created.append(f"placement {_describe_placement(placement)}")
        return
    changes = []
    for name, value in fields.items():
        old = getattr(placement, name)
        if old != value and name == "docker_config":
            changes.append((name, _docker_config_changes(old, value)))
            setattr(placement, name, value)
        elif old != value:
            shown_old = old.name if hasattr(old, "name") else _show("", old)
            shown_new = value.name if hasattr(value, "name") else _show("", value)
            changes.append((name, f"{name} {shown_old} -> {shown_new}"))
            setattr(placement, name, value)
    if changes:
        placement.save(update_fields=[name for name, _ in changes])
        report.updated.append(
            f"placement {_describe_placement(placement)}: " + "; ".join(t for _, t in changes)
        )


def _docker_config_changes(old: dict, new: dict) -> str:
    """What changed in a Docker placement's config, key by key, as the file writes them."""
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            before = _show_docker(key, old.get(key))
            changes.append(f"{key} {before} -> {_show_docker(key, new.get(key))}")
    return "; ".join(changes)


def _show_docker(key: str, value: Any) -> str:
    if key in DOCKER_DURATIONS and isinstance(value, int):
        return format_duration(value)
    return _show("", value)
