"""The History page: every deploy, filterable by a plain GET form, newest first, paged.

The view reads the filters, hands the valid ones to deploys.history and renders. A filter
value that does not clean is shown with its error and left out; the page still renders. A
value with a NUL or a lone surrogate is bad input: the same, with status 400.
Queries per request, whatever the table holds: the session and user (login), applications
and people (the selects, which also clean the submitted slug and username without a query
of their own), the page, and for an older page the ids above it (see deploys.history).
"""

from urllib.parse import urlencode

from django import forms
from django.contrib.auth import get_user_model
from django.shortcuts import render
from django.urls import reverse

from fatcontroller.text import TextCheckedForm

from .history import STATE_GROUPS, HistoryFilters, history_page
from .models import Application
from .states import State

GROUP_LABELS = {
    "active": "Active (queued or in flight)",
    "final": "Any final state",
    "shipped": "Shipped (succeeded or merged)",
}
STATE_CHOICES = [
    ("", "Any state"),
    ("Groups", [(group, GROUP_LABELS[group]) for group in STATE_GROUPS]),
    ("States", list(State.choices)),
]
BAD_DATE = "Enter a date as YYYY-MM-DD."


class DayInput(forms.DateInput):
    input_type = "date"

    def __init__(self):
        super().__init__(format="%Y-%m-%d")


class HistoryFilterForm(TextCheckedForm):
    application = forms.ChoiceField(
        required=False, error_messages={"invalid_choice": "There is no application “%(value)s”."}
    )
    person = forms.ChoiceField(
        required=False, error_messages={"invalid_choice": "There is nobody called “%(value)s”."}
    )
    state = forms.ChoiceField(
        required=False,
        choices=STATE_CHOICES,
        error_messages={"invalid_choice": "“%(value)s” is not a state."},
    )
    date_from = forms.DateField(
        label="From", required=False, widget=DayInput(), error_messages={"invalid": BAD_DATE}
    )
    date_to = forms.DateField(
        label="To", required=False, widget=DayInput(), error_messages={"invalid": BAD_DATE}
    )
    # The older/newer links' cursor: not a field anyone fills in, so never rendered.
    before = forms.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput
    )

    def __init__(self, data, *, applications, people):
        super().__init__(data, label_suffix="")
        self.applications = {a.slug: a for a in applications}
        self.people = {p.get_username(): p for p in people}
        self.fields["application"].choices = [("", "All applications")] + [
            (slug, slug) for slug in self.applications
        ]
        self.fields["person"].choices = [("", "Everybody")] + [(name, name) for name in self.people]

    def clean_application(self):
        return self.applications.get(self.cleaned_data["application"])

    def clean_person(self):
        return self.people.get(self.cleaned_data["person"])

    def clean(self):
        date_from, date_to = self.cleaned_data.get("date_from"), self.cleaned_data.get("date_to")
        if date_from and date_to and date_to < date_from:
            self.add_error("date_to", "This is before the From date.")  # drops date_to
        return self.cleaned_data

    def filters(self) -> HistoryFilters:
        """The filters from the fields that cleaned; the others are left out."""
        cleaned = self.cleaned_data
        return HistoryFilters(
            application=cleaned.get("application"),
            requester=cleaned.get("person"),
            state=cleaned.get("state") or "",
            date_from=cleaned.get("date_from"),
            date_to=cleaned.get("date_to"),
        )


def filter_query(filters: HistoryFilters) -> dict[str, str]:
    """The filters as the form submits them, for links that keep them."""
    query = {
        "application": filters.application.slug if filters.application else "",
        "person": filters.requester.get_username() if filters.requester else "",
        "state": filters.state,
        "date_from": filters.date_from.isoformat() if filters.date_from else "",
        "date_to": filters.date_to.isoformat() if filters.date_to else "",
    }
    return {key: value for key, value in query.items() if value}


def page_url(filters: HistoryFilters, before: int | None = None) -> str:
    query = filter_query(filters)
    if before is not None:
        query["before"] = str(before)
    return reverse("history") + ("?" + urlencode(query) if query else "")


def history(request):
    applications = list(Application.objects.only("id", "slug", "name"))
    people = list(get_user_model().objects.order_by("username").only("id", "username"))
    form = HistoryFilterForm(request.GET, applications=applications, people=people)
    form.is_valid()  # cleaned_data keeps the fields that cleaned; errors show on the others
    filters = form.filters()
    page = history_page(filters, before=form.cleaned_data.get("before"))
    return render(
        request,
        "deploys/history.html",
        {
            "form": form,
            "page": page,
            "filtered": bool(filter_query(filters)),
            "newest_url": page_url(filters),
            "newer_url": page.newer_before and page_url(filters, page.newer_before),
            "older_url": page.older_before and page_url(filters, page.older_before),
        },
        status=400 if form.bad_text else 200,
    )
