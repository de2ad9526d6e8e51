"""lib/urls.py: which URLs carry credentials, and how they are shown without them.

The examples are the cases people write; the properties hold it to urllib's reading of a
URL, so a secret urlsplit would hand to a client is never missed.
"""

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib.urls import has_credentials, redact, redact_text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pass@host/x.git", "https://***@host/x.git"),
        ("https://ghp_token123@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("https://TOKEN@host", "https://***@host"),
        ("HTTPS://u:p@ss@host/x.git", "HTTPS://***@host/x.git"),
        ("https://@host/x", "https://***@host/x"),
        ("https://tok@host?next=/a@b#c@d", "https://***@host?next=/a@b#c@d"),
        ("//tok@host/x", "//***@host/x"),
        (" https://to\nken@host/x", "https://***@host/x"),
        ("ssh://git:pw@host/x.git", "ssh://***@host/x.git"),
        ("git+ssh://git:pw@host/x.git", "git+ssh://***@host/x.git"),
        ("ssh://:@host", "ssh://***@host"),  # an empty password is still one: masked, and
        # the mask still says so (Hypothesis found that one)
    ],
)
def test_credentials_are_found_and_masked(url, shown):
    assert has_credentials(url)
    assert redact(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "ssh://git@host/x.git",  # a login name on ssh, not a secret
        "SSH://git@host/x.git",
        "git@github.com:o/r.git",  # scp-style: not a URL
        "https://github.com/o/r.git",
        "/srv/git/shop.git",
        "https://host/path@v1",
        "https://host?user=a@b",
        "https://host#a@b",
        "https:tok@host",  # no //, no authority
        "",
    ],
)
def test_urls_without_credentials_are_left_as_they_are(url):
    assert not has_credentials(url)
    assert redact(url) == url


URL_CHARACTERS = "aZ09:/?#@.+- \t\n%"
PREFIXES = ("", "https://", "HTTP://", "ssh://", "git+ssh://", "//", " https://", "x1+.-://")


def _login_on_ssh(parts) -> bool:
    userinfo = parts.netloc.rpartition("@")[0]
    return parts.scheme in ("ssh", "git+ssh", "ssh+git") and ":" not in userinfo


@given(st.sampled_from(PREFIXES), st.text(alphabet=URL_CHARACTERS, max_size=30))
def test_credentials_are_what_urlsplit_reads_as_userinfo(prefix, rest):
    url = prefix + rest
    parts = urlsplit(url)
    assert has_credentials(url) == ("@" in parts.netloc and not _login_on_ssh(parts))


HOST = st.text(alphabet="abc.-:0123456789", max_size=15)  # a port too
SECRET = st.text(alphabet="SECRT:@%!$&'()*+,;=", max_size=15)  # may hold : and @
REST = st.text(alphabet="abc/?#@=&", max_size=15).map(lambda s: "/" + s if s else s)


@given(st.sampled_from(("https", "HTTP", "git+ssh", "s3")), SECRET, HOST, REST)
def test_redacting_leaves_only_the_mask_where_the_userinfo_was(scheme, secret, host, rest):
    url = f"{scheme}://{secret}@{host}{rest}"
    if scheme == "git+ssh" and ":" not in secret:
        assert redact(url) == url  # a login name
    else:
        assert redact(url) == f"{scheme}://***@{host}{rest}"


@given(st.sampled_from(PREFIXES), st.text(alphabet=URL_CHARACTERS, max_size=30))
def test_redacting_twice_is_redacting_once(prefix, rest):
    url = prefix + rest
    once = redact(url)
    assert redact(once) == once
    assert has_credentials(once) == has_credentials(url)
    assert (once != url) <= has_credentials(url)  # only a URL with credentials is changed


def test_every_url_in_a_message_is_redacted_by_the_same_rule():
    message = (
        "fatal: unable to access 'https://user:s3cret@git.example.com/shop.git/': timed out; "
        "also tried https://TOKEN@mirror.example.com/shop.git and ssh://git@git.example.com/x"
    )

    shown = redact_text(message)

    assert "s3cret" not in shown and "TOKEN" not in shown
    assert "'https://***@git.example.com/shop.git/'" in shown
    assert "https://***@mirror.example.com/shop.git and" in shown
    assert "ssh://git@git.example.com/x" in shown  # a login name, as redact() leaves it
    assert redact_text("no URL here") == "no URL here"
