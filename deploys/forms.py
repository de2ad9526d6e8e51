"""The queue form of the dashboard. Like every form here it refuses NUL and lone surrogates
in any field (fatcontroller.text.TextCheckedForm), before deploys.actions sees the values."""

from django import forms

from clusters.models import MigrationState
from fatcontroller.text import TextCheckedForm

from .states import Mode


class QueueDeployForm(TextCheckedForm):
    application = forms.SlugField(widget=forms.HiddenInput)
    branch = forms.CharField(max_length=200)
    # A restore is queued from the release it puts back, not from here.
    mode = forms.ChoiceField(
        choices=[(Mode.DEPLOY, Mode.DEPLOY.label), (Mode.MERGE_ONLY, Mode.MERGE_ONLY.label)],
        initial=Mode.DEPLOY,
    )
    note = forms.CharField(max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class MigrationMoveForm(TextCheckedForm):
    """A person's move of a migration phase on the migration page (clusters/migration.py
    judges it; this only reads the fields)."""

    to = forms.ChoiceField(choices=MigrationState.choices)
    reason = forms.CharField(max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))
    force = forms.BooleanField(required=False)
