import pytest
import yaml
from rest_framework.test import APIClient

from appconfig.apply import apply_app_config
from appconfig.export import export_app_config, export_app_config_data
from appconfig.parse import parse_app_config
from clusters.models import Cluster, Placement, Service
from tests.appconfig.files import example_text


@pytest.mark.django_db
def test_export_round_trips_the_example(application):
    apply_app_config(parse_app_config(example_text()))
    application.refresh_from_db()
    exported = export_app_config(application)
    assert exported.startswith("# demo-shop: Fat Controller application configuration")
    config = parse_app_config(exported)
    assert config == parse_app_config(example_text())
    assert config.warnings == []
    assert not apply_app_config(config).changed


@pytest.mark.django_db
def test_export_says_what_is_in_the_database(application):
    cluster = Cluster.objects.create(name="prod", region="eu-west-1")
    web = Service.objects.create(application=application, name="web", process_type="web", phase=2)
    jobs = Service.objects.create(
        application=application,
        name="jobs",
        process_type="other",
        phase=1,
        health_check_url="http://jobs.internal/ping",
    )
    Placement.objects.create(
        service=web, cluster=cluster, ecs_service_name="shop-web", container_name="app"
    )
    Placement.objects.create(service=jobs, kind="legacy", legacy_job="run-jobs")
    application.build_hold_minutes = 90
    application.soak_seconds = 45
    application.save()

    config = parse_app_config(export_app_config(application))

    application.refresh_from_db()
    for name, value in config.application_values().items():
        assert getattr(application, name) == value, name
    assert config.build_hold_minutes == 90
    assert config.soak_seconds == 45
    assert config.git_remote_url == application.git_remote_url
    assert list(config.clusters) == ["prod"]
    assert (config.clusters["prod"].region, config.clusters["prod"].arn) == ("eu-west-1", "")
    assert [(s.name, s.process_type, s.phase, s.health_check_url) for s in config.services] == [
        ("jobs", "other", 1, "http://jobs.internal/ping"),
        ("web", "web", 2, ""),
    ]
    assert [p.describe() for s in config.services for p in s.placements] == [
        "legacy job run-jobs",
        "prod/shop-web",
    ]
    assert not apply_app_config(config).changed


# The API


@pytest.mark.django_db
def test_the_api_gives_the_config(application, user):
    apply_app_config(parse_app_config(example_text()))
    client = APIClient()
    client.force_authenticate(user)

    response = client.get("/api/applications/demo-shop/config/")

    assert response.status_code == 200
    body = response.json()
    application.refresh_from_db()
    assert body == export_app_config_data(application)
    assert body["application"] == "demo-shop"
    assert body["build"]["timeout"] == "30m"
    assert body["rollout"] == {"phase_timeout": "10m", "soak": "1m"}

    application.memory_guard = "warn"  # written only when it is not the default, refuse
    application.save(update_fields=["memory_guard"])
    warned = export_app_config_data(application)
    assert warned["rollout"]["memory_guard"] == "warn"
    assert parse_app_config(yaml.safe_dump(warned)).memory_guard == "warn"

    application.crash_loop = "scale_to_zero"  # likewise: restore is left out
    application.save(update_fields=["crash_loop"])
    stopping = export_app_config_data(application)
    assert stopping["rollout"]["crash_loop"] == "scale_to_zero"
    assert parse_app_config(yaml.safe_dump(stopping)).crash_loop == "scale_to_zero"
    assert body["clusters"]["demo"]["region"] == "us-east-1"
    assert [s["name"] for s in body["services"]] == ["worker", "poller", "static", "web"]
    assert body["services"][0]["placements"] == [
        {"cluster": "demo", "ecs_service": "demo-shop-worker", "container": "app"},
        {"legacy_job": "old-deploy-worker"},
    ]
    # The same structure as the file: it parses as one.
    assert parse_app_config(yaml.safe_dump(body)) == parse_app_config(example_text())


@pytest.mark.django_db
def test_the_api_needs_a_login(application):
    response = APIClient().get("/api/applications/demo-shop/config/")
    assert response.status_code in (401, 403)
    assert "services" not in response.json()


@pytest.mark.django_db
def test_the_api_answers_404_for_an_unknown_application(user):
    client = APIClient()
    client.force_authenticate(user)
    response = client.get("/api/applications/no-such-app/config/")
    assert response.status_code == 404
    assert "errors" in response.json()
