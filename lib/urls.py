"""Credentials in URLs, by one rule: the userinfo is a secret, whole.

Plain Python, no Django. A URL's userinfo is what stands between `//` and the last `@`
before the path, query or fragment, read as urllib.parse.urlsplit reads it (so also after
the tabs and newlines it drops): "https://user:password@host/x" and "https://TOKEN@host/x"
both carry credentials, since a token is often the user part. The one exception is a bare
user name on ssh ("ssh://git@host/x"), which is a login, not a secret: ssh's password comes
from elsewhere. "git@host:x" (scp-style, no `//`) is not a URL and has no userinfo.

- has_credentials(url) says whether a URL carries any;
- redact(url) masks them as `***@`, keeping the rest, so a reader still sees that the URL
  held some and where it points. A URL without credentials comes back unchanged.
- redact_text(text) does the same to every URL in a message (git's errors quote remotes).

The query is left alone: no value here is known to carry a secret there, and a message
that should not show one (Jenkins') leaves the query out altogether.
"""

import re

# urlsplit drops these wherever they are, and strips the others from the front (WHATWG).
_DROPPED = str.maketrans("", "", "\t\r\n")
_LEADING = "".join(chr(n) for n in range(0x21))  # C0 controls and space

# The scheme is optional: urlsplit reads "//user@host/x" as having a netloc too.
_AUTHORITY = re.compile(r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):)?//(?P<userinfo>[^/?#]*)@")

_SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")

MASK = "***"


def _credentials(url: str) -> tuple[str, re.Match] | None:
    """The URL as urlsplit reads it, and the match of its userinfo, if that is a secret."""
    cleaned = url.translate(_DROPPED).lstrip(_LEADING)
    match = _AUTHORITY.match(cleaned)
    if match is None:
        return None
    scheme = (match["scheme"] or "").lower()
    userinfo = match["userinfo"]
    # A login name, as in ssh://git@host/x, is no secret; the mask is one (an ssh URL that
    # held a password reads ssh://***@host/x once redacted, and must still say it held one).
    if scheme in _SSH_SCHEMES and ":" not in userinfo and userinfo != MASK:
        return None
    return cleaned, match


def has_credentials(url: str) -> bool:
    """Whether the URL has a userinfo part that may be a secret (user, token or user:password)."""
    return _credentials(url) is not None


def redact(url: str) -> str:
    """The URL with its credentials masked: "https://***@host/x" for "https://u:p@host/x"."""
    found = _credentials(url)
    if found is None:
        return url
    cleaned, match = found
    return f"{cleaned[: match.start('userinfo')]}{MASK}{cleaned[match.end('userinfo') :]}"


# A URL inside free text: from its scheme to the next blank or quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted by the same rule as redact()."""
    return _URL_IN_TEXT.sub(lambda found: redact(found[0]), text)
