"""The History page: filters, keyset pagination, bad input, escaping, and its query cost."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deploys.history import PAGE_SIZE, HistoryFilters, history_page, human_duration
from deploys.models import Application, Deploy
from deploys.states import ACTIVE_STATES, FINAL_STATES, Mode, State
from tests.pages import ok_html_of

URL = "/history/"
# Session and user (login), applications and people (the selects), the page, the ids above it.
MAX_QUERIES = 6
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def shop(db):
    return Application.objects.create(slug="shop", name="Shop", git_remote_url="/nowhere/shop")


@pytest.fixture
def blog(db):
    return Application.objects.create(slug="blog", name="Blog", git_remote_url="/nowhere/blog")


def add(application, user, count=1, *, state=State.SUCCEEDED, created_at=None, **fields):
    """`count` deploys in one INSERT, oldest first; returns them with their ids."""
    start = Deploy.objects.count()
    deploys = Deploy.objects.bulk_create(
        Deploy(
            application=application,
            requester=user,
            branch=fields.pop("branch", None) or f"feature/{application.slug}-{start + i}",
            state=state,
            **fields,
        )
        for i in range(count)
    )
    if created_at is not None:  # auto_now_add overwrites it on insert
        Deploy.objects.filter(pk__in=[d.pk for d in deploys]).update(created_at=created_at)
    return deploys


def shown(response) -> list[int]:
    """The deploy ids in the table, top to bottom."""
    return [
        int(pk)
        for pk in re.findall(r'<td data-label="#"><a href="/deploys/(\d+)/">', ok_html_of(response))
    ]


def link(response, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]*)" rel="{rel}">', ok_html_of(response))
    return match and match.group(1).replace("&amp;", "&")


def newest_link(response) -> str | None:
    match = re.search(r'<a href="([^"]*)">« Newest</a>', ok_html_of(response))
    return match and match.group(1).replace("&amp;", "&")


def field_errors(response, name: str) -> str:
    """The text of the errors shown in the field's box, next to its input."""
    html = ok_html_of(response)
    match = re.search(
        rf'<div class="history-field has-error">\s*<label for="id_{name}">.*?</div>', html, re.S
    )
    return re.sub(r"<[^>]+>", "", match.group(0)) if match else ""


def newest_first(deploys) -> list[int]:
    return sorted((d.pk for d in deploys), reverse=True)


# --- access --------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in(client, shop, user):
    add(shop, user, 3)
    response = client.get(URL, {"application": "shop"})
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/history/%3Fapplication%3Dshop"


# --- the table -----------------------------------------------------------------------------


def test_every_deploy_is_listed_newest_first_with_its_columns(logged_in, shop, blog, user):
    old = add(shop, user, state=State.SUCCEEDED, mode=Mode.DEPLOY, note="ship it")[0]
    Deploy.objects.filter(pk=old.pk).update(
        created_at=T0, started_at=T0, finished_at=T0 + timedelta(minutes=3, seconds=12)
    )
    new = add(blog, user, state=State.BUILD_FAILED, mode=Mode.MERGE_ONLY, branch="fix/typo")[0]
    response = logged_in.get(URL)
    html = ok_html_of(response)
    assert shown(response) == [new.pk, old.pk]
    row = re.search(rf'<tr>\s*<td data-label="#"><a href="/deploys/{old.pk}/">.*?</tr>', html, re.S)
    row = row.group(0)
    assert f">#{old.pk}</a>" in row
    assert '<td data-label="Application">shop</td>' in row
    assert '<span class="state state-succeeded">Succeeded</span>' in row
    assert '<td data-label="Person" class="who">alice</td>' in row
    assert '<time datetime="2025-03-01T12:00:00+00:00">2025-03-01 12:00</time>' in row
    assert '<td data-label="Duration">3 min 12 s</td>' in row
    assert "ship it" in row and ">Deploy<" in row
    assert '<span class="state state-build_failed">Build failed</span>' in html
    assert "Merge without deploying" in html and "fix/typo" in html
    assert "UTC" in html
    # One page, nothing older or newer.
    assert link(response, "next") is None and link(response, "prev") is None
    assert newest_link(response) is None


def test_a_long_note_is_truncated_with_the_whole_note_in_its_title(logged_in, shop, user):
    note = "word " * 40
    add(shop, user, note=note.strip())
    html = ok_html_of(logged_in.get(URL))
    cell = re.search(
        r'<td data-label="Note" class="history-note" title="([^"]*)">([^<]*)</td>', html
    )
    assert cell, "no truncated note"
    assert cell.group(1) == note.strip()
    assert len(cell.group(2)) <= 60 and cell.group(2).endswith("…")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (192, "3 min 12 s"),
        (3600, "1 h"),
        (2 * 3600 + 5 * 60 + 7, "2 h 5 min"),
        (26 * 3600, "1 d 2 h"),
    ],
)
def test_durations_read_as_people_say_them(seconds, text):
    assert human_duration(T0, T0 + timedelta(seconds=seconds)) == text


def test_a_deploy_without_both_ends_has_no_duration(logged_in, shop, user):
    assert human_duration(None, T0) == human_duration(T0, None) == ""
    add(shop, user, state=State.CANCELLED)  # never started
    assert '<td data-label="Duration">—</td>' in ok_html_of(logged_in.get(URL))


def test_an_empty_history_says_so(logged_in, shop, user):
    assert "No deploys yet." in ok_html_of(logged_in.get(URL))
    add(shop, user)
    html = ok_html_of(logged_in.get(URL, {"state": State.FAILED}))
    assert "No deploys match these filters." in html
    assert "<table" not in html


# --- filters -------------------------------------------------------------------------------


def test_filtering_by_application(logged_in, shop, blog, user):
    shops = add(shop, user, 3)
    add(blog, user, 2)
    response = logged_in.get(URL, {"application": "shop"})
    assert shown(response) == newest_first(shops)
    assert '<option value="shop" selected>shop</option>' in ok_html_of(response)


def test_filtering_by_person(logged_in, shop, user, other_user):
    add(shop, user, 2)
    bobs = add(shop, other_user, 3)
    response = logged_in.get(URL, {"person": "bob"})
    assert shown(response) == newest_first(bobs)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.FAILED, {State.FAILED}),
        (State.QUEUED, {State.QUEUED}),
        ("final", {State.SUCCEEDED, State.FAILED, State.MERGED}),
        ("active", {State.QUEUED, State.BUILDING}),
        ("shipped", {State.SUCCEEDED, State.MERGED}),
    ],
)
def test_filtering_by_state_or_group(logged_in, shop, user, state, expected):
    made = {}
    for each in (State.QUEUED, State.BUILDING, State.SUCCEEDED, State.FAILED, State.MERGED):
        made[each] = add(shop, user, state=each)[0]
    response = logged_in.get(URL, {"state": state})
    assert shown(response) == newest_first(d for s, d in made.items() if s in expected)


@pytest.mark.parametrize(("group", "states"), [("final", FINAL_STATES), ("active", ACTIVE_STATES)])
def test_a_state_group_is_exactly_its_states(logged_in, user, group, states):
    # One deploy in every state, each of its own application (one slot holder per application).
    apps = Application.objects.bulk_create(
        Application(slug=f"app-{state}".replace("_", "-"), name=state, git_remote_url="/nowhere")
        for state in State.values
    )
    for state, app in zip(State.values, apps, strict=True):
        add(app, user, state=state)
    state_of = dict(Deploy.objects.values_list("id", "state"))
    assert set(state_of.values()) == set(State.values)
    shown_states = {state_of[pk] for pk in shown(logged_in.get(URL, {"state": group}))}
    assert shown_states == set(states)


def test_filtering_by_date_is_by_whole_utc_days(logged_in, shop, user):
    late = add(shop, user, created_at=datetime(2025, 3, 1, 23, 59, 59, tzinfo=UTC))[0]
    early = add(shop, user, created_at=datetime(2025, 3, 2, 0, 0, 0, tzinfo=UTC))[0]
    later = add(shop, user, created_at=datetime(2025, 3, 3, 0, 0, 0, tzinfo=UTC))[0]
    assert shown(logged_in.get(URL, {"date_to": "2025-03-01"})) == [late.pk]
    assert shown(logged_in.get(URL, {"date_from": "2025-03-02"})) == [later.pk, early.pk]
    one_day = {"date_from": "2025-03-02", "date_to": "2025-03-02"}
    assert shown(logged_in.get(URL, one_day)) == [early.pk]
    assert shown(logged_in.get(URL, {"date_to": "9999-12-31"})) == [later.pk, early.pk, late.pk]


def test_filters_combine(logged_in, shop, blog, user, other_user):
    day = datetime(2025, 3, 2, 10, tzinfo=UTC)
    target = add(shop, other_user, state=State.FAILED, created_at=day)
    add(shop, other_user, state=State.QUEUED, created_at=day)  # other state, not final
    add(shop, user, state=State.FAILED, created_at=day)  # other person
    add(blog, other_user, state=State.FAILED, created_at=day)  # other application
    add(shop, other_user, state=State.FAILED, created_at=day + timedelta(days=1))  # other day
    query = {
        "application": "shop",
        "person": "bob",
        "state": "failed",
        "date_from": "2025-03-02",
        "date_to": "2025-03-02",
    }
    assert shown(logged_in.get(URL, query)) == [target[0].pk]
    assert shown(logged_in.get(URL, {**query, "state": "final"})) == [target[0].pk]


def test_a_blank_form_submission_filters_nothing(logged_in, shop, blog, user):
    made = add(shop, user, 2) + add(blog, user, 2)
    blank = {"application": "", "person": "", "state": "", "date_from": "", "date_to": ""}
    response = logged_in.get(URL, blank)
    assert shown(response) == newest_first(made)
    assert "has-error" not in ok_html_of(response)


# --- bad filter values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("date_from", "2025-13-45", "Enter a date as YYYY-MM-DD."),
        ("date_to", "yesterday", "Enter a date as YYYY-MM-DD."),
        ("state", "exploded", "“exploded” is not a state."),
        ("application", "nope", "There is no application “nope”."),
        ("person", "mallory", "There is nobody called “mallory”."),
    ],
)
def test_a_bad_filter_value_is_shown_next_to_its_field_and_ignored(
    logged_in, shop, blog, user, field, value, error
):
    shops = add(shop, user, 2)
    add(blog, user, 2)
    # The bad value sits beside a good one: the good one still filters.
    response = logged_in.get(URL, {"application": "shop", field: value})
    if field == "application":
        assert len(shown(response)) == 4  # the only filter was the bad one
    else:
        assert shown(response) == newest_first(shops)
    assert error in field_errors(response, field)
    for other in {"date_from", "date_to", "state", "application", "person"} - {field}:
        assert field_errors(response, other) == ""


def test_a_to_date_before_the_from_date_is_an_error_and_dropped(logged_in, shop, user):
    made = add(shop, user, created_at=datetime(2025, 3, 5, tzinfo=UTC))
    response = logged_in.get(URL, {"date_from": "2025-03-04", "date_to": "2025-03-01"})
    assert "This is before the From date." in field_errors(response, "date_to")
    assert shown(response) == [made[0].pk]  # filtered from the 4th only


def test_markup_in_a_bad_value_is_escaped(logged_in, shop, user):
    response = logged_in.get(URL, {"state": "<script>alert(1)</script>"})
    html = ok_html_of(response)
    assert "<script>alert(1)" not in html
    assert "“&lt;script&gt;alert(1)&lt;/script&gt;” is not a state." in field_errors(
        response, "state"
    )


@pytest.mark.parametrize("before", ["abc", "0", "-5", str(2**70)])
def test_a_bad_page_cursor_shows_the_newest_page(logged_in, shop, user, before):
    made = add(shop, user, 3)
    response = logged_in.get(URL, {"before": before})
    assert shown(response) == newest_first(made)
    assert "That page link was not understood" in ok_html_of(response)


# --- escaping ------------------------------------------------------------------------------


def test_branch_and_note_are_escaped(logged_in, shop, user):
    evil = "<script>alert(1)</script>"
    add(shop, user, branch=evil, note=evil)
    add(shop, user, note=evil + "x" * 80)  # the truncated note and its title
    html = ok_html_of(logged_in.get(URL))
    assert "<script>alert(1)</script>" not in html
    assert '<td data-label="Branch" class="branch">&lt;script&gt;alert(1)&lt;/script&gt;</td>' in (
        html
    )
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3


# --- pagination ----------------------------------------------------------------------------


def test_pages_follow_each_other_without_gap_or_overlap(logged_in, shop, user):
    made = add(shop, user, 120)
    everything = newest_first(made)

    first = logged_in.get(URL)
    assert shown(first) == everything[:PAGE_SIZE]
    assert newest_link(first) is None and link(first, "prev") is None
    second = logged_in.get(link(first, "next"))
    assert shown(second) == everything[PAGE_SIZE : 2 * PAGE_SIZE]
    third = logged_in.get(link(second, "next"))
    assert shown(third) == everything[2 * PAGE_SIZE :]
    assert link(third, "next") is None  # the oldest page

    # And back: "newer" gives exactly the page before, "newest" the first.
    assert shown(logged_in.get(link(third, "prev"))) == shown(second)
    assert link(second, "prev") is None  # the newer page is the newest: one link for it
    assert shown(logged_in.get(newest_link(second))) == shown(first)
    assert newest_link(second) == URL


def test_pages_keep_their_place_when_deploys_are_queued_meanwhile(logged_in, shop, user):
    made = add(shop, user, 60)
    first = logged_in.get(URL)
    add(shop, user, 5)  # queued while someone reads the first page
    second = logged_in.get(link(first, "next"))
    assert shown(second) == newest_first(made)[PAGE_SIZE:]


def test_exactly_one_page_has_no_older_link(logged_in, shop, user):
    add(shop, user, PAGE_SIZE)
    response = logged_in.get(URL)
    assert len(shown(response)) == PAGE_SIZE
    assert link(response, "next") is None


def test_page_links_keep_the_filters_url_encoded(logged_in, shop, blog, db):
    odd = get_user_model().objects.create_user("ann+ops@example.com")
    hers = add(shop, odd, 60, state=State.FAILED)
    add(blog, odd, 10, state=State.FAILED)
    add(shop, odd, 10, state=State.MERGED)
    query = {"application": "shop", "person": odd.username, "state": "failed"}
    query |= {"date_from": "2000-01-01", "date_to": "2999-12-31"}
    first = logged_in.get(URL, query)
    older = link(first, "next")
    assert "person=ann%2Bops%40example.com" in older
    assert parse_qs(urlsplit(older).query) == {
        **{key: [value] for key, value in query.items()},
        "before": [str(shown(first)[-1])],
    }
    second = logged_in.get(older)
    assert "has-error" not in ok_html_of(second)
    assert shown(first) + shown(second) == newest_first(hers)
    assert parse_qs(urlsplit(newest_link(second)).query) == {k: [v] for k, v in query.items()}


def test_a_cursor_past_the_oldest_deploy_says_there_is_nothing_older(logged_in, shop, user):
    made = add(shop, user, 3)
    response = logged_in.get(URL, {"before": min(d.pk for d in made)})
    assert shown(response) == []
    assert "No older deploys." in ok_html_of(response)
    assert newest_link(response) == URL


# --- cost ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [5, 120])
@pytest.mark.parametrize(
    "query",
    [{}, {"application": "shop", "person": "alice", "state": "final", "date_from": "2000-01-01"}],
)
def test_the_page_costs_a_fixed_number_of_queries(
    logged_in, shop, blog, user, other_user, django_assert_max_num_queries, rows, query
):
    add(shop, user, rows // 2)
    add(blog, other_user, rows - rows // 2)
    with django_assert_max_num_queries(MAX_QUERIES):
        first = logged_in.get(URL, query)
    assert shown(first)  # the rows were rendered, application and person included
    assert ">alice<" in ok_html_of(first)
    # An older page (one more query, for the ids above it) stays within the same bound.
    before = {**query, "before": shown(first)[-1] + 1}
    with django_assert_max_num_queries(MAX_QUERIES):
        older = logged_in.get(URL, before)
    assert shown(older)[0] == shown(first)[-1]


def test_the_query_count_does_not_grow_with_the_rows(logged_in, shop, blog, user, other_user):
    def count(query) -> int:
        with CaptureQueriesContext(connection) as captured:
            ok_html_of(logged_in.get(URL, query))
        return len(captured)

    add(shop, user, 3)
    add(blog, other_user, 2)
    few = [count({}), count({"before": Deploy.objects.latest("id").pk})]
    add(shop, user, 60)
    add(blog, other_user, 55)
    assert [count({}), count({"before": Deploy.objects.latest("id").pk})] == few


# --- the plan on PostgreSQL ------------------------------------------------------------------

BULK_ROWS = 100_000


@pytest.fixture
def hundred_thousand(shop, blog, user, other_user):
    """100,000 deploys a minute apart, in one INSERT ... SELECT, then ANALYZE.

    Ten applications, blog among them with 1% of the deploys; twenty people, bob with 0.2%;
    2% failed. The planner may read a common application's deploys off the primary key and
    skip the others (as fast: 51 matches come within ~500 rows); a rare one needs its index.
    """
    apps = [shop] + [
        Application.objects.create(slug=f"app-{i}", name=f"App {i}", git_remote_url="/nowhere")
        for i in range(8)
    ]
    people = [user] + get_user_model().objects.bulk_create(
        get_user_model()(username=f"person-{i}") for i in range(18)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO deploys_deploy (application_id, branch, mode, requester_id, note, state,
                head_sha, candidate_sha, commits, created_at, updated_at, started_at, finished_at)
            SELECT CASE WHEN n %% 100 = 0 THEN %s ELSE (%s::bigint[])[1 + n %% 9] END,
                'feature/' || n, 'deploy',
                CASE WHEN n %% 500 = 0 THEN %s ELSE (%s::bigint[])[1 + n %% 19] END, '',
                CASE WHEN n %% 50 = 0 THEN 'failed' ELSE 'succeeded' END, '', '', '[]',
                t, t, t, t + interval '3 minutes'
            FROM generate_series(1, %s) AS n,
                LATERAL (SELECT timestamptz '2020-01-01' + n * interval '1 minute' AS t) AS at
            """,
            [blog.pk, [a.pk for a in apps], other_user.pk, [p.pk for p in people], BULK_ROWS],
        )
        cursor.execute("ANALYZE deploys_deploy")


def plan_of_page(filters: HistoryFilters, before=None) -> str:
    """EXPLAIN of the very query history_page ran for its rows."""
    with CaptureQueriesContext(connection) as captured:
        page = history_page(filters, before=before)
    assert len(page.rows) == PAGE_SIZE
    (sql,) = [q["sql"] for q in captured if "DESC LIMIT" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "Index Scan Backward using deploys_deploy_pkey"),
        ({"application": "blog"}, "using deploy_app_newest"),
        ({"application": "shop"}, "Index Scan"),  # its own index or the primary key
        ({"requester": "bob"}, "using deploy_requester_newest"),
        ({"state": State.FAILED}, "using deploy_state_newest"),
    ],
)
@pytest.mark.usefixtures("hundred_thousand")
@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="EXPLAIN output is PostgreSQL's")
def test_the_page_query_reads_an_index_in_order_and_stops(filters, index):
    if "application" in filters:
        filters = {"application": Application.objects.get(slug=filters["application"])}
    if "requester" in filters:
        filters = {"requester": get_user_model().objects.get(username=filters["requester"])}
    oldest = Deploy.objects.order_by("id").values_list("id", flat=True).first()
    for before in (None, oldest + BULK_ROWS // 2):
        plan = plan_of_page(HistoryFilters(**filters), before)
        assert index in plan, plan
        assert "Seq Scan on deploys_deploy" not in plan, plan
        assert "Sort" not in plan, plan  # the index gives the order, so LIMIT ends the scan
