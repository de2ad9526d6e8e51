"""Build logs: the cap, reading a part from an offset, the log API, and the deploy page's tails,
against the real database."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from builds.logs import LOG_SLICE_MAX_CHARS, LOG_TAIL_CHARS, log_slice, log_tail, with_log_tail
from builds.models import Build, BuildStatus
from deploys.models import Deploy
from deploys.states import Mode, State

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def deploy(application, user) -> Deploy:
    return Deploy.objects.create(
        application=application,
        branch="feature/flaky-test",
        requester=user,
        mode=Mode.MERGE_ONLY,
        state=State.BUILDING,
    )


def make_build(deploy, attempt=1, status=BuildStatus.RUNNING, **fields) -> Build:
    return Build.objects.create(deploy=deploy, attempt=attempt, status=status, **fields)


def written(build, *chunks) -> Build:
    for chunk in chunks:
        assert build.append_log(chunk) == 1
    build.refresh_from_db()
    return build


def log_url(deploy_id, attempt=1) -> str:
    return f"/api/deploys/{deploy_id}/builds/{attempt}/log"


def page(client, deploy) -> str:
    response = client.get(f"/deploys/{deploy.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def build_section(html: str, attempt: int) -> str:
    match = re.search(
        rf'<section class="build" id="build-{attempt}"[^>]*>(.*?)</section>', html, re.S
    )
    assert match, f"no section for build {attempt} on the page"
    return match.group(1)


def log_pre(section: str) -> tuple[str, str]:
    """The attributes and the text of a build section's log (HTML drops the newline after
    <pre>, and the page puts one there so the log's own first newline survives)."""
    match = re.search(r"<pre ([^>]*)>\n(.*?)</pre>", section, re.S)
    assert match, "no log in the section"
    return match.group(1), match.group(2)


def whole_log_selected(sql: str) -> bool:
    """Whether a query reads the log column itself, not only a function of it."""
    inside_functions = re.sub(r'(LENGTH|SUBSTRING|SUBSTR|RIGHT)\("builds_build"\."log"', "", sql)
    return '"builds_build"."log"' in inside_functions


# --- the cap -------------------------------------------------------------------------------


def test_append_log_keeps_everything_under_the_cap(deploy, settings):
    settings.FC_BUILD_LOG_MAX_CHARS = 10
    build = written(make_build(deploy), "abc", "defg", "hij")
    assert (build.log, build.log_cut_chars, build.log_end) == ("abcdefghij", 0, 10)


def test_append_log_past_the_cap_cuts_the_start_and_counts_it(deploy, settings):
    settings.FC_BUILD_LOG_MAX_CHARS = 10
    build = written(make_build(deploy), "abcdef", "ghijkl")
    assert (build.log, build.log_cut_chars, build.log_end) == ("cdefghijkl", 2, 12)
    build = written(build, "mnopqrstuvwxyz")  # one chunk longer than the cap
    assert (build.log, build.log_cut_chars, build.log_end) == ("qrstuvwxyz", 16, 26)
    build = written(build, "0")
    assert (build.log, build.log_cut_chars, build.log_end) == ("rstuvwxyz0", 17, 27)


def test_append_log_counts_characters_not_bytes(deploy, settings):
    settings.FC_BUILD_LOG_MAX_CHARS = 4
    build = written(make_build(deploy), "ünï", "cødé")
    assert (build.log, build.log_cut_chars, build.log_end) == ("cødé", 3, 7)


def test_append_log_drops_nul_characters(deploy):
    build = written(make_build(deploy), "a\x00b")
    assert build.log == "ab"


# --- log_slice -----------------------------------------------------------------------------


@pytest.fixture
def digits(deploy) -> Build:
    return written(make_build(deploy), "01234", "56789")


@pytest.mark.parametrize(
    ("offset", "text", "served", "next_offset"),
    [
        (0, "0123456789", 0, 10),
        (4, "456789", 4, 10),
        (10, "", 10, 10),
        (15, "", 10, 10),  # past the end: served as the end, nothing lost
    ],
)
def test_log_slice_reads_from_an_offset(digits, offset, text, served, next_offset):
    part = log_slice(digits.pk, offset)
    assert (part.text, part.offset, part.next_offset) == (text, served, next_offset)
    assert (part.end, part.cut_chars, part.missed_chars) == (10, 0, 0)
    assert part.status == BuildStatus.RUNNING
    assert part.finished is False


def test_log_slice_takes_a_build_its_id_or_a_queryset(digits):
    expected = log_slice(digits.pk, 3)
    assert log_slice(digits, 3) == expected
    assert log_slice(Build.objects.filter(deploy=digits.deploy, attempt=1), 3) == expected


def test_log_slice_gives_at_most_limit_chars_and_is_finished_only_at_the_end(digits):
    Build.objects.filter(pk=digits.pk).update(status=BuildStatus.FAILED)
    first = log_slice(digits, 2, limit_chars=3)
    assert (first.text, first.offset, first.next_offset, first.end) == ("234", 2, 5, 10)
    assert first.status == BuildStatus.FAILED
    assert first.finished is False  # the build is over, but more of its log is waiting
    rest = log_slice(digits, first.next_offset, limit_chars=100)
    assert (rest.text, rest.next_offset, rest.finished) == ("56789", 10, True)


def test_log_slice_before_the_cut_serves_the_first_kept_character_and_says_what_was_missed(
    deploy, settings
):
    settings.FC_BUILD_LOG_MAX_CHARS = 10
    build = written(make_build(deploy), ALPHABET[:13], ALPHABET[13:])
    assert build.log_cut_chars == 16
    part = log_slice(build, 0)
    assert (part.text, part.offset, part.next_offset) == ("qrstuvwxyz", 16, 26)
    assert (part.cut_chars, part.missed_chars) == (16, 16)
    part = log_slice(build, 12)
    assert (part.text, part.offset, part.missed_chars) == ("qrstuvwxyz", 16, 4)
    part = log_slice(build, 20)
    assert (part.text, part.offset, part.next_offset, part.missed_chars) == ("uvwxyz", 20, 26, 0)
    part = log_slice(build, 26)
    assert (part.text, part.offset, part.next_offset, part.missed_chars) == ("", 26, 26, 0)


def test_offsets_stay_valid_when_the_cap_cuts_between_two_reads(deploy, settings):
    settings.FC_BUILD_LOG_MAX_CHARS = 10
    build = written(make_build(deploy), ALPHABET)
    first = log_slice(build, 20, limit_chars=3)
    assert (first.text, first.next_offset) == ("uvw", 23)
    written(build, "0123")  # the cap now cuts 20 characters, not 16
    second = log_slice(build, first.next_offset)
    assert (second.text, second.offset, second.next_offset) == ("xyz0123", 23, 30)
    assert (second.cut_chars, second.missed_chars) == (20, 0)


def test_log_slice_counts_characters_not_bytes(deploy):
    build = written(make_build(deploy), "ünï\n", "cødé €\n")
    part = log_slice(build, 4)
    assert (part.text, part.next_offset, part.end) == ("cødé €\n", 11, 11)


def test_log_slice_reads_only_the_part_asked_for(digits):
    with CaptureQueriesContext(connection) as queries:
        log_slice(digits, 5, limit_chars=2)
    [query] = queries.captured_queries
    assert not whole_log_selected(query["sql"]), query["sql"]


def test_log_slice_refuses_a_negative_offset(digits):
    with pytest.raises(ValueError, match="negative"):
        log_slice(digits, -1)


def test_log_slice_of_no_build_raises_does_not_exist(db):
    with pytest.raises(Build.DoesNotExist):
        log_slice(123456, 0)


def test_log_slice_copes_with_an_absurd_offset(digits):
    part = log_slice(digits, 10**30)
    assert (part.text, part.offset, part.next_offset, part.missed_chars) == ("", 10, 10, 0)


# --- log_tail ------------------------------------------------------------------------------


def test_log_tail_shows_the_end_and_counts_what_it_leaves_out(deploy, settings):
    settings.FC_BUILD_LOG_MAX_CHARS = 20
    written(make_build(deploy), ALPHABET)  # 6 cut, 20 kept
    build = with_log_tail(Build.objects.filter(deploy=deploy), chars=8).get()
    with CaptureQueriesContext(connection) as queries:
        tail = log_tail(build)
    assert not queries.captured_queries  # read with the build
    assert tail.text == "stuvwxyz"
    assert (tail.offset, tail.next_offset, tail.hidden_chars, tail.cut_chars) == (18, 26, 12, 6)


def test_log_tail_of_a_short_log_is_the_whole_log(digits):
    tail = log_tail(with_log_tail(Build.objects.filter(pk=digits.pk)).get())
    assert (tail.text, tail.offset, tail.next_offset, tail.hidden_chars) == ("0123456789", 0, 10, 0)


def test_log_tail_of_a_plain_build_reads_only_the_tail(deploy):
    build = written(make_build(deploy), "x" * (LOG_TAIL_CHARS + 5) + "end\n")
    plain = Build.objects.defer("log").get(pk=build.pk)
    with CaptureQueriesContext(connection) as queries:
        tail = log_tail(plain)
    assert len(queries.captured_queries) == 1
    assert not whole_log_selected(queries.captured_queries[0]["sql"])
    assert len(tail.text) == LOG_TAIL_CHARS
    assert tail.text.endswith("xend\n")
    assert tail.hidden_chars == 9


# --- the API -------------------------------------------------------------------------------


def test_the_api_gives_the_log_from_an_offset(logged_in, deploy):
    build = written(make_build(deploy), "line 1\n", "line 2\n")
    response = logged_in.get(log_url(deploy.pk), {"offset": 7})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    assert response.json() == {
        "deploy": deploy.pk,
        "attempt": 1,
        "status": "running",
        "finished": False,
        "offset": 7,
        "next_offset": 14,
        "end": 14,
        "text": "line 2\n",
        "cut_chars": 0,
        "missed_chars": 0,
    }
    assert build.log_end == 14


def test_the_api_offset_defaults_to_the_start(logged_in, deploy):
    written(make_build(deploy), "line 1\n")
    body = logged_in.get(log_url(deploy.pk)).json()
    assert (body["offset"], body["text"], body["next_offset"]) == (0, "line 1\n", 7)


def test_a_follow_up_read_from_next_offset_gets_only_the_new_text(logged_in, deploy):
    build = written(make_build(deploy), "line 1\n")
    first = logged_in.get(log_url(deploy.pk), {"offset": 0}).json()
    assert first["text"] == "line 1\n"
    nothing_new = logged_in.get(log_url(deploy.pk), {"offset": first["next_offset"]}).json()
    assert (nothing_new["text"], nothing_new["next_offset"]) == ("", 7)
    written(build, "line 2\n", "line 3\n")
    Build.objects.filter(pk=build.pk).update(status=BuildStatus.SUCCEEDED)
    second = logged_in.get(log_url(deploy.pk), {"offset": first["next_offset"]}).json()
    assert second["text"] == "line 2\nline 3\n"
    assert (second["offset"], second["next_offset"]) == (7, 21)
    assert (second["status"], second["finished"]) == ("succeeded", True)


def test_a_long_log_comes_in_parts_and_is_finished_after_the_last(logged_in, deploy):
    make_build(deploy, status=BuildStatus.FAILED, log="x" * LOG_SLICE_MAX_CHARS + "why\n")
    first = logged_in.get(log_url(deploy.pk)).json()
    assert len(first["text"]) == LOG_SLICE_MAX_CHARS
    assert first["next_offset"] == LOG_SLICE_MAX_CHARS
    assert first["finished"] is False
    last = logged_in.get(log_url(deploy.pk), {"offset": first["next_offset"]}).json()
    assert (last["text"], last["finished"]) == ("why\n", True)


def test_the_api_says_what_the_cap_cut_before_the_offset(logged_in, deploy, settings):
    settings.FC_BUILD_LOG_MAX_CHARS = 10
    written(make_build(deploy), ALPHABET)
    body = logged_in.get(log_url(deploy.pk), {"offset": 3}).json()
    assert (body["text"], body["offset"], body["next_offset"]) == ("qrstuvwxyz", 16, 26)
    assert (body["cut_chars"], body["missed_chars"]) == (16, 13)


def test_the_api_reads_the_attempt_asked_for(logged_in, deploy):
    make_build(deploy, attempt=1, status=BuildStatus.FAILED, log="first\n")
    make_build(deploy, attempt=2, log="second\n")
    assert logged_in.get(log_url(deploy.pk, 1)).json()["text"] == "first\n"
    body = logged_in.get(log_url(deploy.pk, 2)).json()
    assert (body["attempt"], body["text"], body["status"]) == (2, "second\n", "running")


@pytest.mark.parametrize("offset", ["abc", "-1", "", "1.5", "+3", " 3", "٣", "9" * 40])
def test_a_bad_offset_is_refused(logged_in, deploy, offset):
    make_build(deploy, log="line\n")
    response = logged_in.get(log_url(deploy.pk), {"offset": offset})
    assert response.status_code == 400
    [message] = response.json()["errors"]["offset"]
    assert message in ("Must be a whole number, 0 or more.", "Too large.")


def test_an_unknown_attempt_is_not_found(logged_in, deploy):
    make_build(deploy, log="line\n")
    response = logged_in.get(log_url(deploy.pk, 2))
    assert response.status_code == 404
    assert response.json() == {"errors": {"detail": [f"Deploy #{deploy.pk} has no build 2."]}}


def test_an_unknown_deploy_is_not_found(logged_in, deploy):
    make_build(deploy, log="line\n")
    response = logged_in.get(log_url(deploy.pk + 1))
    assert response.status_code == 404
    assert response.json() == {"errors": {"detail": [f"There is no deploy #{deploy.pk + 1}."]}}


def test_anonymous_users_get_no_log(client, deploy):
    make_build(deploy, log="secret line\n")
    response = client.get(log_url(deploy.pk))
    assert response.status_code in (401, 403)
    assert b"secret line" not in response.content


def test_a_script_in_the_log_is_returned_as_data(logged_in, deploy):
    line = '<script>alert("log")</script>\n'
    make_build(deploy, log=line)
    response = logged_in.get(log_url(deploy.pk))
    assert response["Content-Type"] == "application/json"
    assert response.json()["text"] == line


# --- the deploy page -----------------------------------------------------------------------


def test_the_page_lists_every_attempt_with_its_facts(logged_in, deploy):
    make_build(
        deploy,
        attempt=1,
        status=BuildStatus.FAILED,
        backend="jenkins",
        summary="unit tests failed",
        external_url="https://ci.example/job/shop/41/",
        image_tag="shop:abc123",
        log="first attempt\n",
    )
    make_build(deploy, attempt=2, external_url="javascript:alert(1)", log="second attempt\n")
    html = page(logged_in, deploy)
    first, second = build_section(html, 1), build_section(html, 2)
    assert "Build 1" in first and "Failed" in first
    assert '<span class="backend">jenkins</span>' in first
    assert '<p class="summary">unit tests failed</p>' in first
    assert '<a href="https://ci.example/job/shop/41/" rel="noopener">' in first
    assert "<code>shop:abc123</code>" in first
    assert log_pre(first)[1] == "first attempt\n"
    assert "Build 2" in second and "Running" in second
    assert '<span class="backend">local</span>' in second
    assert "javascript:" not in html
    assert log_pre(second)[1] == "second attempt\n"


def test_the_page_shows_the_tail_of_a_long_log_and_says_what_it_leaves_out(logged_in, deploy):
    log = "FIRST LINE\n" + "x" * LOG_TAIL_CHARS + "LAST LINE\n"
    make_build(deploy, status=BuildStatus.FAILED, log=log)
    section = build_section(page(logged_in, deploy), 1)
    text = log_pre(section)[1]
    assert len(text) == LOG_TAIL_CHARS
    assert text.endswith("xLAST LINE\n")
    assert "FIRST LINE" not in section
    hidden = len(log) - LOG_TAIL_CHARS
    assert f'<p class="log-note">{hidden} earlier characters not shown.</p>' in section
    assert "cut to keep the log under the cap" not in section


def test_the_page_says_when_the_cap_cut_the_log(logged_in, deploy, settings):
    settings.FC_BUILD_LOG_MAX_CHARS = 10
    written(make_build(deploy, status=BuildStatus.FAILED), ALPHABET)
    section = build_section(page(logged_in, deploy), 1)
    assert log_pre(section)[1] == "qrstuvwxyz"
    assert (
        '<p class="log-note">16 characters were cut to keep the log under the cap.</p>' in section
    )
    assert "earlier characters not shown" not in section


def test_a_short_log_has_no_notes(logged_in, deploy):
    make_build(deploy, status=BuildStatus.FAILED, log="short\n")
    section = build_section(page(logged_in, deploy), 1)
    assert log_pre(section)[1] == "short\n"
    assert "log-note" not in section


def test_the_page_escapes_the_log(logged_in, deploy):
    make_build(deploy, log='building\n<script>alert("log")</script>\n<img src=x onerror=alert(1)>')
    html = page(logged_in, deploy)
    assert (
        "&lt;script&gt;alert(&quot;log&quot;)&lt;/script&gt;" in log_pre(build_section(html, 1))[1]
    )
    assert "<script>alert" not in html
    assert "<img src=x" not in html


def test_a_running_build_is_followed_from_the_end_of_its_log(logged_in, deploy, settings):
    settings.FC_BUILD_LOG_MAX_CHARS = 10
    make_build(deploy, attempt=1, status=BuildStatus.FAILED, log="old\n")
    written(make_build(deploy, attempt=2), ALPHABET)
    html = page(logged_in, deploy)
    finished_attrs = log_pre(build_section(html, 1))[0]
    assert finished_attrs == 'class="log" data-attempt="1"'  # a finished log is not polled
    running_attrs = log_pre(build_section(html, 2))[0]
    assert f'data-log-url="{log_url(deploy.pk, 2)}"' in running_attrs
    assert 'data-next-offset="26"' in running_attrs  # the end as written, counting the cut


def test_the_page_follows_the_deploy_state_with_a_noscript_fallback(logged_in, deploy):
    html = page(logged_in, deploy)
    head = html[: html.index("</head>")]
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in head
    assert "http-equiv" not in re.sub(r"<noscript>.*?</noscript>", "", html, flags=re.S)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert sorted(scripts) == [  # nothing inline
        (' src="/static/js/build-log.js" defer', ""),
        (' src="/static/js/live.js" defer', ""),
    ]
    # live.js polls the page's own fragment and swaps the parts that changed.
    assert f'data-live-url="/deploys/{deploy.pk}/live/"' in html
    state = re.search(r'<span [^>]*id="deploy-state"[^>]*>', html).group(0)
    assert 'data-state="building"' in state


def test_a_final_deploy_is_not_polled(logged_in, deploy):
    make_build(deploy, status=BuildStatus.RUNNING, log="aborted soon\n")
    Deploy.objects.filter(pk=deploy.pk).update(state=State.CANCELLED, finished_at=timezone.now())
    html = page(logged_in, deploy)
    assert "http-equiv" not in html
    assert 'data-live-final="1"' in html
    assert "data-log-url" not in html


def test_the_deploy_api_the_page_polls_gives_the_state_and_builds(logged_in, deploy):
    make_build(deploy, log="line\n")
    body = logged_in.get(f"/api/deploys/{deploy.pk}/").json()
    assert body["state"] == "building"
    assert len(body["builds"]) == 1


def test_the_page_script_exists_and_never_parses_html():
    path = finders.find("js/build-log.js")
    assert path, "static/js/build-log.js is not found by the staticfiles finders"
    source = Path(path).read_text()
    assert "createTextNode" in source
    for parsing in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert parsing not in source


def test_a_failed_build_says_how_long_the_slot_is_held(logged_in, deploy):
    held_until = datetime(2030, 5, 17, 14, 35, tzinfo=UTC)
    Deploy.objects.filter(pk=deploy.pk).update(state=State.BUILD_FAILED, held_until=held_until)
    make_build(deploy, status=BuildStatus.FAILED, log="red\n")
    html = page(logged_in, deploy)
    assert django_settings.TIME_ZONE == "UTC"
    assert (
        '<p class="held">The slot is held until '
        '<time datetime="2030-05-17T14:35:00+00:00" data-format="time">14:35 UTC</time>; '
        "after that it goes to the next deploy.</p>"
    ) in html
    buttons = html[
        html.index('<div class="buttons">') : html.index("</div>", html.index("buttons"))
    ]
    assert "Retry build" in buttons and 'class="held"' in buttons


@pytest.mark.parametrize(("state", "held"), [(State.BUILD_FAILED, False), (State.BUILDING, True)])
def test_no_hold_is_shown_unless_a_failed_build_holds_the_slot(logged_in, deploy, state, held):
    held_until = timezone.now() if held else None
    Deploy.objects.filter(pk=deploy.pk).update(state=state, held_until=held_until)
    html = page(logged_in, deploy)
    assert "is held until" not in html


def test_the_page_reads_only_log_tails_in_one_query(logged_in, deploy):
    for attempt in (1, 2, 3):
        make_build(deploy, attempt=attempt, status=BuildStatus.FAILED, log=f"log {attempt}\n")
    with CaptureQueriesContext(connection) as queries:
        html = page(logged_in, deploy)
    build_queries = [
        q["sql"] for q in queries.captured_queries if 'FROM "builds_build"' in q["sql"]
    ]
    assert len(build_queries) == 1
    assert not whole_log_selected(build_queries[0]), build_queries[0]
    assert [log_pre(build_section(html, n))[1] for n in (1, 2, 3)] == [
        "log 1\n",
        "log 2\n",
        "log 3\n",
    ]
