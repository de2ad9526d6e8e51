"""The states' facts the pages' JavaScript needs, from deploys/states.py, so that live.js keeps
no list of its own."""

from django import template

from deploys.states import FINAL_STATES

register = template.Library()


@register.simple_tag
def final_states() -> str:
    """The final states, space-separated, for <body data-final-states>."""
    return " ".join(sorted(FINAL_STATES))
