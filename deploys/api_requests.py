"""The request bodies of the API's writes, as serializers: checked, and documented by them.

Each checks the body's shape (an object, the fields there, each of its type); what the rule
of the action says (a branch name git takes, an application that exists, a role that
allows it) stays the action's, so that the pages and the API refuse the same input with the
same words. A body that is not an object is refused as a whole, under "body".

The fields are strict where DRF's are lenient: a number is not a branch, and "yes" is not
true, as the API always answered.
"""

from collections.abc import Mapping

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from clusters.models import MigrationState

from .actions import QUEUEABLE_MODES
from .applications import MAX_REASON_LENGTH

MAX_NOTE_LENGTH = 500
MAX_MOVE_REASON_LENGTH = 1000  # clusters.migration.move's limit


class Text(serializers.CharField):
    """A string, never a number or a boolean turned into one."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class Flag(serializers.BooleanField):
    """true or false, and only those (a form's "true" and "false" too)."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or data in ("true", "false"):
            return super().to_internal_value(data)
        self.fail("invalid")


class RequestBody(serializers.Serializer):
    # An object, or a 400 saying so under "body" (DRF would say "non_field_errors"). No
    # docstring: the schema would show it on every request body that has none of its own.

    def run_validation(self, data=serializers.empty):
        if not isinstance(data, Mapping):  # a list, a string, null
            raise serializers.ValidationError({"body": ["Must be a JSON object."]})
        return super().run_validation(data)


@extend_schema_serializer(component_name="QueueDeploy")
class QueueDeployRequest(RequestBody):
    """A branch of an application to queue."""

    # As the API always said, for a number too: no usable value was given.
    REQUIRED = {
        "required": "This field is required.",
        "blank": "This field is required.",
        "null": "This field is required.",
        "invalid": "This field is required.",
    }

    application = Text(help_text="The application's slug.", error_messages=REQUIRED)
    branch = Text(
        help_text="The branch to merge and ship (not the application's default branch).",
        trim_whitespace=False,
        error_messages=REQUIRED,
    )
    mode = serializers.ChoiceField(
        choices=QUEUEABLE_MODES,
        default=QUEUEABLE_MODES[0],
        help_text="deploy: merge, build and roll out; merge_only: merge, and stop there.",
        error_messages={"invalid_choice": f"Mode must be one of: {', '.join(QUEUEABLE_MODES)}."},
    )
    note = Text(
        required=False,
        default="",
        allow_blank=True,
        trim_whitespace=False,
        max_length=MAX_NOTE_LENGTH,
        error_messages={"max_length": f"A note is at most {MAX_NOTE_LENGTH} characters."},
    )


@extend_schema_serializer(component_name="Lock")
class LockRequest(RequestBody):
    """Why the application is locked."""

    WHY = "A reason is required: say why deploys should wait."

    reason = Text(
        help_text="Why deploys should wait; shown on the application's page.",
        max_length=MAX_REASON_LENGTH,  # of the reason stripped, as the lock's own rule
        error_messages={
            "required": WHY,
            "blank": WHY,
            "null": WHY,
            "max_length": f"A reason is at most {MAX_REASON_LENGTH} characters.",
        },
    )


@extend_schema_serializer(component_name="MigrationMove")
class MigrationMoveRequest(RequestBody):
    """The phase's next state, and why. A field not listed here is refused."""

    to = serializers.ChoiceField(
        choices=MigrationState.choices,
        help_text="The phase's next state.",
        error_messages={
            "required": "This field is required: a phase state.",
            "blank": "This field is required: a phase state.",
            "null": "This field is required: a phase state.",
            "invalid_choice": f"Must be one of {', '.join(MigrationState.values)}.",
        },
    )
    reason = Text(
        help_text="Why, kept with the move.",
        max_length=MAX_MOVE_REASON_LENGTH,
        error_messages={
            "required": "This field is required: say why.",
            "blank": "This field is required: say why.",
            "null": "This field is required: say why.",
            "max_length": f"At most {MAX_MOVE_REASON_LENGTH} characters.",
        },
    )
    force = Flag(
        default=False,
        help_text="Move out of order, past the proof the rules ask for (staff only).",
    )

    def to_internal_value(self, data):
        # Refused with the other fields' errors: a field this version does not know may mean
        # something it does not do.
        errors = {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({**errors, **exc.detail}) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value
