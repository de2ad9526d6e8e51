"""/metrics: only with the token; what it shows after deploys made through the code's own
functions; errors counted where the AWS and Jenkins errors are mapped."""

import pytest
import requests
from botocore.exceptions import ClientError

from builds.backends import BackendUnavailable
from builds.jenkins import JenkinsBackend
from clusters.targets import ecs
from deploys import actions, applications
from deploys.states import Mode
from monitoring import metrics
from monitoring.models import Counter

from .conftest import TOKEN, sample


def test_no_token_set_means_no_metrics_page(client, db, settings):
    settings.FC_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_a_missing_token_is_401_and_a_wrong_one_403(client, db, metrics_token):
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "y" * 30).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 403


def test_the_right_token_needs_no_login(client, db, metrics_token):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for name in (
        "fc_deploys",
        "fc_queue_length",
        "fc_queue_oldest_wait_seconds",
        "fc_step_duration_seconds",
        "fc_safety_net_rescues_total",
        "fc_jenkins_errors_total",
        "fc_aws_errors_total",
        "django_http_requests_total_by_method_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


def test_deploys_queues_and_step_durations_after_real_deploys(
    application, user, other_user, drive, django_capture_on_commit_callbacks, scrape
):
    def queue(branch, requester=user):
        with django_capture_on_commit_callbacks(execute=True):
            return actions.queue_deploy(
                application=application.slug,
                branch=branch,
                mode=Mode.MERGE_ONLY,
                requester=requester,
            )

    queue("feature/clean-merge")
    drive()
    queue("feature/conflicting-prices")
    drive()
    # Locked: the next one waits in the queue.
    applications.lock_application(application, actor=user, reason="release freeze")
    queue("feature/flaky-test", requester=other_user)
    drive()

    samples = scrape()
    deploys = {
        (dict(labels)["state"], dict(labels)["outcome"]): value
        for (name, labels), value in samples.items()
        if name == "fc_deploys"
    }
    assert deploys == {
        ("merged", "shipped"): 1,
        ("merge_conflict", "failed"): 1,
        ("queued", "active"): 1,
    }
    assert sample(samples, "fc_queue_length", application="demo-shop") == 1
    assert sample(samples, "fc_queue_oldest_wait_seconds", application="demo-shop") >= 0

    # Every state left is observed once per deploy that left it.
    def step_count(state):
        return sample(samples, "fc_step_duration_seconds_count", state=state)

    assert step_count("queued") == 2
    assert step_count("merging") == 2
    assert step_count("building") == 1
    assert step_count("merging_to_default") == 1
    assert sample(samples, "fc_step_duration_seconds_bucket", state="merging", le="+Inf") == 2
    assert sample(samples, "fc_step_duration_seconds_sum", state="merging") > 0
    # The HTTP requests of this very scrape's process, through django-prometheus.
    assert any(name == "django_http_requests_total_by_method_total" for name, _ in samples)


def test_histogram_buckets_add_up_by_value(db, scrape, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for seconds in (0.5, 3, 3, 45, 100_000):
            metrics.observe("fc_step_duration_seconds", seconds, state="building")
    samples = scrape()

    def bucket(le):
        return sample(samples, "fc_step_duration_seconds_bucket", state="building", le=le)

    assert [bucket("1.0"), bucket("5.0"), bucket("30.0"), bucket("60.0")] == [1, 3, 3, 4]
    assert bucket("86400.0") == 4
    assert bucket("+Inf") == 5
    assert sample(samples, "fc_step_duration_seconds_count", state="building") == 5
    assert sample(samples, "fc_step_duration_seconds_sum", state="building") == 100_051.5


def test_safety_net_rescues_are_counted(db, scrape, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        metrics.count("fc_safety_net_rescues_total", step="building")
        metrics.count("fc_safety_net_rescues_total", step="building")
        metrics.count("fc_safety_net_rescues_total", step="slot")
    samples = scrape()
    assert sample(samples, "fc_safety_net_rescues_total", step="building") == 2
    assert sample(samples, "fc_safety_net_rescues_total", step="slot") == 1
    assert Counter.objects.count() == 2  # one row per series, incremented in place


def test_a_count_in_a_transaction_that_rolls_back_counts_nothing(
    db, django_capture_on_commit_callbacks
):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                metrics.count("fc_safety_net_rescues_total", step="building")
                raise RuntimeError("the change failed")
        except RuntimeError:
            pass
    assert callbacks == []
    assert not Counter.objects.exists()


def test_aws_errors_are_counted_where_they_are_mapped(
    db, scrape, django_capture_on_commit_callbacks
):
    # In a worker the count is written at once; in this test's transaction it waits for the
    # commit, so the callbacks are run here.
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(ecs.TargetRefused):
            with ecs._aws("read service web on prod"):
                raise ClientError(
                    {"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                    "DescribeServices",
                )
        with pytest.raises(ecs.TargetUnavailable):
            with ecs._aws("read service web on prod"):
                raise ClientError(
                    {"Error": {"Code": "ThrottlingException", "Message": "slow down"}},
                    "DescribeServices",
                )
    samples = scrape()
    assert sample(samples, "fc_aws_errors_total", kind="refused") == 1
    assert sample(samples, "fc_aws_errors_total", kind="unavailable") == 1


def test_jenkins_errors_are_counted_with_their_status(
    db, scrape, django_capture_on_commit_callbacks
):
    backend = JenkinsBackend("https://ci:secret@jenkins.example.com/", "ci", "secret", 1.0)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(BackendUnavailable):
            with backend._calling("read build #3 of 'shop'", missing=None):
                raise requests.ConnectionError("[Errno 111] Connection refused")
    samples = scrape()
    assert sample(samples, "fc_jenkins_errors_total", kind="unavailable", status="none") == 1
    # The URL and its credentials are nowhere in a label.
    assert not any("jenkins.example.com" in str(labels) for _, labels in samples)


def test_unknown_metrics_labels_and_url_labels_are_refused(db):
    with pytest.raises(ValueError, match="no counter"):
        metrics.count("fc_made_up_total", step="x")
    with pytest.raises(ValueError, match="takes the labels step"):
        metrics.count("fc_safety_net_rescues_total", state="building")
    with pytest.raises(ValueError, match="looks like a URL"):
        metrics.count("fc_safety_net_rescues_total", step="https://u:p@host/")
