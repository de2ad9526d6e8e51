"""The states' facts the pages' JavaScript needs, from deploys/states.py, so that live.js keeps
no list of its own; and `may`, what the person looking may press (deploys/roles.py)."""

from django import template

from deploys import roles
from deploys.states import FINAL_STATES

register = template.Library()


@register.simple_tag
def final_states() -> str:
    """The final states, space-separated, for <body data-final-states>."""
    return " ".join(sorted(FINAL_STATES))


@register.simple_tag(takes_context=True)
def may(context, action: str, target) -> bool:
    """{% may "queue" app as can_queue %}: what deploys/roles.py says of the person looking."""
    return roles.may(context.get("user"), action, target)
