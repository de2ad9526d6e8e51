"""Reading the server-rendered pages in tests: their HTML, their flash messages, their links."""

import re


def html_of(response) -> str:
    return response.content.decode()


def ok_html_of(response) -> str:
    """The HTML of a page that must have answered 200."""
    assert response.status_code == 200
    return html_of(response)


def flashes(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def linked_deploys(fragment: str) -> list[int]:
    """The ids of the deploys a fragment links to, in order."""
    return [int(pk) for pk in re.findall(r'href="/deploys/(\d+)/"', fragment)]
