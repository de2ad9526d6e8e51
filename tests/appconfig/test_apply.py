import pytest
import yaml

from appconfig.apply import apply_app_config
from appconfig.errors import ConfigError
from appconfig.parse import parse_app_config
from clusters.models import Cluster, Placement, Service
from deploys.models import Application, Deploy, ServiceRollout
from tests.appconfig.files import db_state, edited_example, example_text


@pytest.mark.django_db
def test_an_unknown_application_needs_create(application):
    text = example_text().replace("application: demo-shop", "application: new-shop")
    with pytest.raises(ConfigError) as caught:
        apply_app_config(parse_app_config(text))
    assert caught.value.errors == [
        "application: no application 'new-shop'; load with --create to create it"
    ]
    assert not Application.objects.filter(slug="new-shop").exists()
    assert not Cluster.objects.exists()

    without_remote = "\n".join(
        line for line in text.splitlines() if not line.startswith("git_remote:")
    )
    with pytest.raises(ConfigError, match="git_remote: required to create the application"):
        apply_app_config(parse_app_config(without_remote), create=True)
    assert not Application.objects.filter(slug="new-shop").exists()

    report = apply_app_config(parse_app_config(text), create=True)
    assert report.created[0] == "application new-shop"
    new = Application.objects.get(slug="new-shop")
    assert new.git_remote_url == "git@github.com:example/demo-shop.git"
    assert new.build_timeout_seconds == 1800
    assert list(new.services.values_list("name", flat=True)) == [
        "worker",
        "poller",
        "static",
        "web",
    ]


@pytest.mark.django_db
def test_apply_creates_everything_and_sets_the_application(application):
    report = apply_app_config(parse_app_config(example_text()))

    assert report.created == [
        "cluster demo (us-east-1)",
        "service worker (worker, phase 1)",
        "service poller (poller, phase 2)",
        "service static (static, phase 3)",
        "service web (web, phase 3)",
        "placement worker on demo/demo-shop-worker",
        "placement worker on legacy job old-deploy-worker",
        "placement poller on demo/demo-shop-poller",
        "placement static on demo/demo-shop-static",
        "placement web on demo/demo-shop-web",
    ]
    assert report.removed == []
    [updated] = report.updated
    assert updated.startswith("application demo-shop: git_remote ")
    assert "build.command \"sh -c 'for check in lint unit integration; do" in updated
    assert "build.timeout 1m -> 30m" in updated
    assert "build.jenkins_job '' -> 'demo-shop'" in updated

    application.refresh_from_db()
    assert application.git_remote_url == "git@github.com:example/demo-shop.git"
    assert application.build_command == "sh build.sh"
    assert application.build_timeout_seconds == 1800
    assert application.build_hold_minutes == 10
    assert application.image_repository.endswith(".amazonaws.com/demo-shop")
    assert application.phase_timeout_seconds == 600
    assert application.soak_seconds == 60
    demo = Cluster.objects.get(name="demo")
    assert (demo.region, demo.arn) == (
        "us-east-1",
        "arn:aws:ecs:us-east-1:123456789012:cluster/demo",
    )
    web = Service.objects.get(application=application, name="web")
    assert (web.process_type, web.phase) == ("web", 3)
    assert web.health_check_url == "https://demo-shop.example.com/healthz"
    assert sorted(
        Placement.objects.values_list(
            "service__name",
            "kind",
            "cluster__name",
            "ecs_service_name",
            "container_name",
            "legacy_job",
        )
    ) == [
        ("poller", "ecs", "demo", "demo-shop-poller", "app", ""),
        ("static", "ecs", "demo", "demo-shop-static", "nginx", ""),
        ("web", "ecs", "demo", "demo-shop-web", "app", ""),
        ("worker", "ecs", "demo", "demo-shop-worker", "app", ""),
        ("worker", "legacy", None, "", "", "old-deploy-worker"),
    ]


@pytest.mark.django_db
def test_applying_the_same_file_again_changes_nothing(application):
    apply_app_config(parse_app_config(example_text()))
    before = db_state(application)

    report = apply_app_config(parse_app_config(example_text()))

    assert not report.changed
    assert (report.created, report.updated, report.removed) == ([], [], [])
    assert str(report) == "demo-shop: unchanged"
    assert db_state(application) == before


@pytest.mark.django_db
def test_apply_after_an_edit_changes_exactly_that(application):
    apply_app_config(parse_app_config(example_text()))
    before = db_state(application)
    kept = dict(Placement.objects.values_list("ecs_service_name", "id"))

    def edit(data):
        data["services"][1]["phase"] = 1  # poller
        del data["services"][2]  # static
        data["services"][2]["placements"].append(
            {"cluster": "demo", "ecs_service": "demo-shop-web-canary", "container": "app"}
        )

    report = apply_app_config(parse_app_config(edited_example(edit)))

    assert report.updated == ["service poller: phase 2 -> 1"]
    assert report.created == ["placement web on demo/demo-shop-web-canary"]
    assert report.removed == ["placement static on demo/demo-shop-static", "service static"]
    assert str(report).startswith("demo-shop: 1 created, 1 updated, 2 removed\n")

    after = db_state(application)
    assert after["application"] == before["application"]
    assert after["clusters"] == before["clusters"]
    assert Service.objects.get(name="poller").phase == 1
    assert not Service.objects.filter(name="static").exists()
    assert not Placement.objects.filter(ecs_service_name="demo-shop-static").exists()
    # The placements that stayed are the same rows.
    for name in ("demo-shop-worker", "demo-shop-poller", "demo-shop-web"):
        assert Placement.objects.get(ecs_service_name=name).id == kept[name]
    assert Placement.objects.filter(ecs_service_name="demo-shop-web-canary").exists()


@pytest.mark.django_db
def test_settings_left_out_of_the_file_are_left_alone(application):
    application.image_repository = "registry.example.com/shop"
    application.save()
    text = "\n".join(
        line for line in example_text().splitlines() if not line.startswith("image_repository:")
    )
    apply_app_config(parse_app_config(text))
    application.refresh_from_db()
    assert application.image_repository == "registry.example.com/shop"
    assert application.build_command == "sh build.sh"


@pytest.mark.django_db
def test_a_placement_moved_to_another_service_keeps_its_row(application):
    apply_app_config(parse_app_config(example_text()))
    placement_id = Placement.objects.get(ecs_service_name="demo-shop-static").id

    def move(data):
        static = data["services"].pop(2)
        data["services"][2]["placements"] += static["placements"]  # onto web

    report = apply_app_config(parse_app_config(edited_example(move)))

    assert report.updated == ["placement web on demo/demo-shop-static: service static -> web"]
    assert report.removed == ["service static"]
    moved = Placement.objects.get(ecs_service_name="demo-shop-static")
    assert (moved.id, moved.service.name) == (placement_id, "web")


def make_rollout(user, application, placement):
    deploy = Deploy.objects.create(
        application=application, branch="feature/x", requester=user, state="succeeded"
    )
    return ServiceRollout.objects.create(deploy=deploy, placement=placement, phase=1)


@pytest.mark.django_db
def test_a_placement_with_rollouts_is_not_removed_and_nothing_changes(application, user):
    apply_app_config(parse_app_config(example_text()))
    make_rollout(user, application, Placement.objects.get(ecs_service_name="demo-shop-static"))
    make_rollout(user, application, Placement.objects.get(legacy_job="old-deploy-worker"))
    before = db_state(application)

    def edit(data):
        data["name"] = "Renamed shop"
        data["services"][1]["phase"] = 1
        del data["services"][2]  # static, whose placement has a rollout
        data["services"][0]["placements"].pop()  # the legacy job, which has one too

    with pytest.raises(ConfigError) as caught:
        apply_app_config(parse_app_config(edited_example(edit)))

    assert caught.value.errors == [
        "placement worker on legacy job old-deploy-worker has 1 rollout(s) in its deploy "
        "history and cannot be removed: keep it in the file",
        "placement static on demo/demo-shop-static has 1 rollout(s) in its deploy history and "
        "cannot be removed (its service 'static' is not in the file): keep it in the file",
    ]
    assert db_state(application) == before
    assert application.name == "Demo shop"


@pytest.mark.django_db
def test_another_applications_ecs_service_is_refused(application):
    apply_app_config(parse_app_config(example_text()))
    other = example_text().replace("application: demo-shop", "application: other-shop")
    with pytest.raises(ConfigError) as caught:
        apply_app_config(parse_app_config(other), create=True)
    assert caught.value.errors[0] == (
        "services[0].placements[0]: demo/demo-shop-worker is already a placement of "
        "demo-shop's service 'worker'"
    )
    assert len(caught.value.errors) == 4  # every ECS placement, the legacy job is not one
    assert not Application.objects.filter(slug="other-shop").exists()


@pytest.mark.django_db
def test_dry_run_reports_the_changes_and_writes_nothing(application):
    before = db_state(application)
    report = apply_app_config(parse_app_config(example_text()), dry_run=True)
    assert len(report.created) == 10
    assert str(report).startswith("demo-shop: 10 created, 1 updated, 0 removed (dry run")
    assert db_state(application) == before
    assert not Cluster.objects.exists()


def test_a_cluster_may_allow_the_agent_watch_to_drain_and_the_export_says_so(db):
    from appconfig.export import export_app_config_data

    data = yaml.safe_load(example_text())
    data["clusters"]["demo"]["drain_disconnected"] = True
    apply_app_config(parse_app_config(yaml.safe_dump(data)), create=True)

    cluster = Cluster.objects.get(name="demo")
    assert cluster.drain_disconnected is True
    exported = export_app_config_data(Application.objects.get(slug=data["application"]))
    assert exported["clusters"]["demo"]["drain_disconnected"] is True


def test_a_cluster_reserved_memory_minimum_is_applied_changed_and_exported_when_not_256(db):
    from appconfig.export import export_app_config_data

    data = yaml.safe_load(example_text())
    apply_app_config(parse_app_config(yaml.safe_dump(data)), create=True)
    application = Application.objects.get(slug=data["application"])
    assert Cluster.objects.get(name="demo").reserved_memory_minimum == 256
    assert "reserved_memory_minimum" not in export_app_config_data(application)["clusters"]["demo"]

    data["clusters"]["demo"]["reserved_memory_minimum"] = 512
    report = apply_app_config(parse_app_config(yaml.safe_dump(data)))
    assert "reserved_memory_minimum 256 -> 512" in str(report)
    assert Cluster.objects.get(name="demo").reserved_memory_minimum == 512
    exported = export_app_config_data(application)
    assert exported["clusters"]["demo"]["reserved_memory_minimum"] == 512
    assert (
        parse_app_config(yaml.safe_dump(exported)).clusters["demo"].reserved_memory_minimum == 512
    )
