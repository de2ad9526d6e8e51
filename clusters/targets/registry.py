"""Is an image there to pull? Asked of any registry that speaks the Docker registry HTTP API v2.

`image_in_registry(image)` is True when the registry has the manifest the image names (by tag
or by digest), False when the registry says it has not (404), and otherwise raises one of the
two target errors (clusters.targets.base), each with a message fit for a deploy's timeline:

* TargetRefused: a person must act. The image names no tag (or a malformed one), or the
  registry or its token service refused: credentials missing or wrong, no pull access, or no
  such repository (Docker Hub and GHCR answer 401 for a repository they do not show, so these
  cannot be told apart). The message names the variables to set, never their values.
* TargetUnavailable: try again later. The registry or its token service did not answer in
  time, answered 5xx or 429 (rate limited), or gave a token answer with no token in it.

References are read as Docker reads them: the first part is a registry host when it has "." or
":" or is "localhost"; otherwise the image is on Docker Hub (registry-1.docker.io, which
"docker.io" and "index.docker.io" also mean), where a one-part name is library/NAME. A digest
(`name@sha256:...`) wins over a tag. A registry on this machine (localhost, 127.0.0.1) is
spoken to over plain HTTP, as Docker does; every other over HTTPS.

Authentication follows the registry token specification (distribution, docs/spec/auth/token.md):
an anonymous HEAD of the manifest first; on 401 with a Bearer challenge, a token from the
challenge's realm for its service and scope (repository:NAME:pull when it gives none), with
Basic credentials when they are set, then the HEAD again with `Authorization: Bearer`; on a
Basic challenge, the credentials themselves. One round only: a second 401 is the answer.

Credentials, per registry host, read from the environment at every check (so a new one needs
no restart; host names are not known in advance, hence not in fatcontroller/settings.py):

    FC_REGISTRY_USER_<HOST>      the user name (for GHCR, the GitHub user)
    FC_REGISTRY_PASSWORD_<HOST>  its password or access token (read-only is enough)

<HOST> is the registry host as reached, port included, upper-cased, with every run of
characters other than letters and digits made one "_": ghcr.io -> GHCR_IO, Docker Hub ->
REGISTRY_1_DOCKER_IO, localhost:5000 -> LOCALHOST_5000. Set both or neither. They are only
ever sent over HTTPS, or to this machine.

Every request has settings.FC_AWS_TIMEOUT as its connect and read timeout.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.utils import parse_dict_header

from clusters.targets.base import TargetRefused, TargetUnavailable

DOCKER_HUB = "registry-1.docker.io"
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", DOCKER_HUB)

# What a HEAD may answer with: an image for one platform or an index of them, in Docker's
# and OCI's words. A registry answers 404 for a manifest whose type is not listed (distribution
# does so for an OCI index), so leaving one out would call a pushed image missing.
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)

LOCAL_HOSTS = ("localhost", "127.0.0.1")

# The grammars of distribution's reference package and the OCI image spec.
_NAME_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"\w[\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


@dataclass(frozen=True)
class Reference:
    """An image reference as a registry is asked about it."""

    host: str  # registry-1.docker.io, ghcr.io, localhost:5000
    name: str  # the repository: library/nginx, team/shop
    reference: str  # a tag or a digest

    @property
    def manifest_url(self) -> str:
        scheme = "http" if _is_local(urlsplit(f"//{self.host}").hostname or "") else "https"
        return f"{scheme}://{self.host}/v2/{self.name}/manifests/{self.reference}"


def names_registry(image: str) -> bool:
    """Does the image name its registry (ghcr.io/team/shop, localhost:5000/x), rather than
    leave Docker Hub to be implied (team/shop, nginx)?"""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def parse_reference(image: str) -> Reference:
    """Read `image` as Docker does; TargetRefused when it has no tag or is malformed."""
    rest, at, digest = image.partition("@")
    first, slash, path = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host = first
    else:
        host, path = DOCKER_HUB, rest
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    # The host is off, so a colon left in the path can only start the tag.
    name, colon, tag = path.rpartition(":")
    if not colon:
        name, tag = path, ""
    if not name or not all(_NAME_COMPONENT.fullmatch(part) for part in name.split("/")):
        raise TargetRefused(f"the image {image} has no valid repository name")
    if at:
        if not _DIGEST.fullmatch(digest):
            raise TargetRefused(f"the image {image} has a malformed digest")
        return Reference(host, name, digest)
    if not tag:
        raise TargetRefused(f"the image {image} has no tag")
    if not _TAG.fullmatch(tag):
        raise TargetRefused(f"the image {image} has a malformed tag")
    return Reference(host, name, tag)


def credential_variables(host: str) -> tuple[str, str]:
    """The names of the user and password variables for a registry host."""
    suffix = re.sub(r"[^A-Z0-9]+", "_", host.upper()).strip("_")
    return f"FC_REGISTRY_USER_{suffix}", f"FC_REGISTRY_PASSWORD_{suffix}"


def image_in_registry(image: str) -> bool:
    """Is the manifest `image` names in its registry? See the module docstring."""
    ref = parse_reference(image)
    credentials = credentials_for(ref.host)
    answer = _head(ref)
    if answer.status_code == 401:
        answer = _head(ref, **_authenticate(ref, image, answer, credentials))
    code = answer.status_code
    if 200 <= code < 300:
        return True
    if code == 404:
        return False
    if code in (401, 403):
        raise _refused(ref, image, credentials)
    if code == 429 or code >= 500:
        raise TargetUnavailable(f"the registry {ref.host} answered {code}")
    raise TargetRefused(f"the registry {ref.host} answered {code} for {image}")


def credentials_for(host: str) -> tuple[str, str] | None:
    """(user, password) for a registry host from the environment, or None when not set."""
    user_var, password_var = credential_variables(host)
    user, password = os.environ.get(user_var, ""), os.environ.get(password_var, "")
    if bool(user) != bool(password):
        missing, present = (password_var, user_var) if user else (user_var, password_var)
        raise TargetRefused(f"{present} is set but {missing} is not: set both or neither")
    return (user, password) if user else None


def _refused(ref: Reference, image: str, credentials: tuple[str, str] | None) -> TargetRefused:
    user_var, password_var = credential_variables(ref.host)
    if credentials is None:
        return TargetRefused(
            f"the registry {ref.host} wants credentials to look up {image} (or has no such "
            f"repository): set {user_var} and {password_var}"
        )
    return TargetRefused(
        f"the registry {ref.host} refused the credentials in {user_var} and {password_var} "
        f"for {image} (or has no such repository)"
    )


def _head(
    ref: Reference, headers: dict[str, str] | None = None, auth: tuple[str, str] | None = None
) -> requests.Response:
    headers = {"Accept": ", ".join(MANIFEST_TYPES), **(headers or {})}
    try:
        return requests.head(
            ref.manifest_url, headers=headers, auth=auth, timeout=settings.FC_AWS_TIMEOUT
        )
    except requests.RequestException as exc:
        raise TargetUnavailable(f"the registry {ref.host} did not answer") from exc


def _authenticate(
    ref: Reference, image: str, answer: requests.Response, credentials: tuple[str, str] | None
) -> dict:
    """What to send again after a 401: keyword arguments for the second HEAD."""
    challenges = _challenges(answer)
    if "bearer" in challenges:
        token = _bearer_token(ref, image, challenges["bearer"], credentials)
        return {"headers": {"Authorization": f"Bearer {token}"}}
    if "basic" in challenges and credentials is not None:
        return {"auth": credentials}
    raise _refused(ref, image, credentials)


def _challenges(answer: requests.Response) -> dict[str, dict[str, str]]:
    """The WWW-Authenticate challenges by scheme (lower case), each with its parameters."""
    raw = getattr(answer.raw, "headers", None)
    lines = raw.getlist("WWW-Authenticate") if hasattr(raw, "getlist") else []
    if not lines and "WWW-Authenticate" in answer.headers:
        lines = [answer.headers["WWW-Authenticate"]]
    challenges = {}
    for line in lines:
        scheme, _, params = line.strip().partition(" ")
        parsed = parse_dict_header(params)
        challenges.setdefault(scheme.lower(), {k.lower(): v or "" for k, v in parsed.items()})
    return challenges


def _bearer_token(
    ref: Reference, image: str, challenge: dict[str, str], credentials: tuple[str, str] | None
) -> str:
    realm = challenge.get("realm", "")
    where = urlsplit(realm)
    if where.scheme not in ("http", "https") or not where.hostname:
        raise TargetRefused(f"the registry {ref.host} gave no usable token address")
    # Credentials in clear would be readable by anyone on the way: only to this machine.
    if credentials is not None and where.scheme != "https" and not _is_local(where.hostname):
        raise TargetRefused(
            f"the registry {ref.host} asks for credentials over plain HTTP ({where.hostname}): "
            "they were not sent"
        )
    params = {"scope": challenge.get("scope") or f"repository:{ref.name}:pull"}
    if challenge.get("service"):
        params["service"] = challenge["service"]
    service = f"the token service of the registry {ref.host}"
    try:
        answer = requests.get(
            realm,
            params=params,
            auth=credentials,
            headers={"Accept": "application/json"},
            timeout=settings.FC_AWS_TIMEOUT,
        )
    except requests.RequestException as exc:
        raise TargetUnavailable(f"{service} did not answer") from exc
    code = answer.status_code
    if code in (401, 403):
        raise _refused(ref, image, credentials)
    if code == 429 or code >= 500:
        raise TargetUnavailable(f"{service} answered {code}")
    if code != 200:
        raise TargetRefused(f"{service} answered {code} for {image}")
    try:
        body = answer.json()
    except ValueError:
        body = None
    token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise TargetUnavailable(f"{service} answered without a token")
    return token


def _is_local(hostname: str) -> bool:
    return hostname in LOCAL_HOSTS
