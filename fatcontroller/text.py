"""What text Fat Controller accepts from outside: no NUL character, no lone surrogate.

PostgreSQL cannot store either (its driver raises ValueError for NUL and UnicodeEncodeError
for a surrogate, which no UTF-8 can carry), SQLite stores NUL silently, and a page or a JSON
answer that echoes a surrogate cannot be encoded. So both are bad input, refused with a 400
before anything is read or written, never a server error.

This module is the one place that decides. text_problem() says what is wrong with one
string; bad_text_in() walks parsed data (JSON, a QueryDict) and names each field; the JSON and
form parsers of the API (fatcontroller.parsers), the forms (TextCheckedForm, validate_text)
and the actions (deploys.actions, deploys.applications) all ask it, so every face refuses
the same input with the same words.
"""

from __future__ import annotations

import math

from django import forms
from django.core.exceptions import ValidationError
from django.utils.datastructures import MultiValueDict

NUL = "Must not contain NUL characters (U+0000)."
SURROGATE = "Must not contain lone surrogates (U+D800 to U+DFFF): text must be valid Unicode."
NOT_FINITE = "Must be a finite number."

# A body with a thousand bad strings answers with this many fields, not a thousand.
MAX_FIELDS_REPORTED = 10


def text_problem(value: str) -> str | None:
    """Why `value` cannot be accepted, as a sentence, or None when it is fine."""
    if "\x00" in value:
        return NUL
    if not value.isascii():
        try:
            # UTF-8 can encode every code point but a surrogate: this is the exact test, in C.
            value.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE
    return None


def displayable(value: str) -> str:
    """`value` without what text_problem() refuses, so a page can show back what was typed."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def bad_text_in(data: object, *, root: str = "body") -> dict[str, list[str]]:
    """Every string in `data` (JSON values, dict keys, QueryDict values) that text_problem()
    refuses, and every non-finite float (JSON's 1e999), as {field: [message]}.

    A field is named by its path from the top: "branch", "services[2].name"; `root` when the
    whole body is the bad value. Empty when all is well. The walk is recursive: give it data
    whose nesting is already bounded (fatcontroller.parsers checks the depth first).
    """
    errors: dict[str, list[str]] = {}
    if isinstance(data, MultiValueDict):  # a form body: each name may carry several values
        for name, values in data.lists():
            if problem := text_problem(name):
                errors.setdefault(f"{root} (a field name)", [problem])
                continue
            for value in values:
                _walk(value, name, root, errors)
    else:
        _walk(data, "", root, errors)
    return dict(list(errors.items())[:MAX_FIELDS_REPORTED])


def _walk(value: object, path: str, root: str, errors: dict[str, list[str]]) -> None:
    if len(errors) >= MAX_FIELDS_REPORTED:
        return
    if isinstance(value, str):
        if problem := text_problem(value):
            errors.setdefault(path or root, [problem])
    elif isinstance(value, float):
        if not math.isfinite(value):
            errors.setdefault(path or root, [NOT_FINITE])
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := text_problem(key)):
                # The key cannot name itself in the answer: name where it sits.
                errors.setdefault(f"{path or root} (a key)", [problem])
                continue
            _walk(item, f"{path}.{key}" if path else str(key), root, errors)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{path or root}[{index}]", root, errors)


def validate_text(value: object) -> None:
    """A Django validator: ValidationError when text_problem() refuses `value`."""
    if isinstance(value, str) and (problem := text_problem(value)):
        raise ValidationError(problem, code="bad_text")


class TextCheckedForm(forms.Form):
    """A form that refuses NUL and lone surrogates in any of its fields, whatever their type.

    A field's own error would quote the bad value back ("There is no application “\\x00”"),
    and a surrogate cannot even be rendered, so a field whose submitted value has either gets
    this module's message instead of its own, and shows back what was typed without them.
    `bad_text` maps those fields to the message: a view answers 400 when it is not empty.
    Names the form has no field for are not its input and are left alone.
    """

    def __init__(self, data=None, *args, **kwargs):
        self.bad_text: dict[str, str] = {}
        if data is not None:
            data = self._without_bad_text(data)
        super().__init__(data, *args, **kwargs)

    def _without_bad_text(self, data) -> MultiValueDict:
        """A copy of `data` whose values for this form's fields are displayable, noting the
        fields whose values were not."""
        if not isinstance(data, MultiValueDict):
            data = MultiValueDict({k: v if isinstance(v, list) else [v] for k, v in data.items()})
        copy = MultiValueDict()
        for name, values in data.lists():
            if name not in self.base_fields:
                copy.setlist(name, values)
                continue
            for value in values:
                if isinstance(value, str) and (problem := text_problem(value)):
                    self.bad_text.setdefault(name, problem)
                    value = displayable(value)
                copy.appendlist(name, value)
        return copy

    def full_clean(self):
        super().full_clean()
        for name, problem in self.bad_text.items():
            self._errors[name] = self.error_class([problem])
            self.cleaned_data.pop(name, None)
