"""A stand-in container registry for tests: a real HTTP server on this machine that answers as
a registry (the Docker registry HTTP API v2) and its token service (distribution's
docs/spec/auth/token.md) do, as far as looking up a manifest goes::

    with RegistryStandin(users={"robot": "s3cret"}) as registry:
        registry.push("team/shop", "abc123")
        registry.push("team/private", "v1", private=True)
        image_in_registry(f"{registry.host}/team/shop:abc123")

How it mirrors a registry (read this before trusting a result)
--------------------------------------------------------------
* ``auth="bearer"`` (the default; Docker Hub, GHCR, Quay, Harbor): a ``/v2/`` request without
  a valid token answers 401 ``UNAUTHORIZED`` with the registry error JSON and
  ``WWW-Authenticate: Bearer realm="<url>/token",service="registry.standin",
  scope="repository:NAME:pull"`` (no scope on ``/v2/`` itself, nor when
  ``scope_in_challenge=False``; ``realm=`` names another token service). A valid token whose
  grant lacks the repository answers 401 with ``error="insufficient_scope"`` added, as
  distribution does.
* The token service, ``GET /token?service=...&scope=...``: another service answers 400.
  Basic credentials, when sent, must be one of ``users`` or it answers 401
  ``{"details": "incorrect username or password"}``, as Docker Hub does; no credentials is an
  anonymous client. As on Docker Hub, a token is issued to anyone, granting pull on what the
  client may pull: a public repository to all, a private one to its ``readers`` (every user when
  not given). A repository that does not exist is granted to nobody, so it answers 401, never
  404: a registry does not tell who may not look which repositories exist. The token is in both
  ``token`` and ``access_token`` unless ``token_field`` names only one.
* ``auth="basic"`` (distribution with htpasswd): 401 with ``WWW-Authenticate: Basic
  realm="Registry Realm"`` until the Basic credentials of one of ``users`` are sent; then every
  repository can be seen. ``auth="none"``: no authentication at all.
* Manifests: ``HEAD`` and ``GET /v2/<name>/manifests/<tag or digest>`` answer 200 with
  ``Content-Type`` (the manifest's media type), ``Docker-Content-Digest`` (sha256 of its bytes)
  and ``Content-Length``; HEAD without the body. An unknown tag or digest answers 404
  ``MANIFEST_UNKNOWN``, an unknown repository (to one allowed to look) 404 ``NAME_UNKNOWN``;
  a HEAD's 404 has the headers and no body. An index (Docker manifest list, OCI index) also
  stores the one manifest it lists, by digest.
* Content negotiation: a manifest whose media type is not in the request's ``Accept`` answers
  404 ``MANIFEST_UNKNOWN``. distribution 2.8+ does this for an OCI index ("OCI index found, but
  accept header does not support OCI indexes"); here it is done for every type, which is
  stricter than real registries (they convert a Docker v2 manifest down to schema 1, or serve it
  anyway).
* ``outage = 503`` makes every ``/v2/`` request answer that status; ``token_outage`` likewise
  for ``/token``. ``requests`` holds every request seen (method, path with query, headers).
* Blobs, for an image stored with ``push_image`` (a root filesystem's tar and a config), so a
  Docker engine can pull it: ``HEAD`` and ``GET /v2/<name>/blobs/<digest>`` answer 200 with
  ``Docker-Content-Digest`` under the same authentication as manifests, 404 ``BLOB_UNKNOWN``
  otherwise. The layer is served gzipped, as ``docker push`` stores it.
* Not modelled: token expiry and refresh tokens (``POST /token``), push over HTTP, the
  catalog, tags/list, pagination, range requests, TLS.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# What each index lists, and the config type of each single-platform manifest.
_LISTED = {DOCKER_MANIFEST_LIST: DOCKER_MANIFEST, OCI_INDEX: OCI_MANIFEST}
_CONFIG = {
    DOCKER_MANIFEST: "application/vnd.docker.container.image.v1+json",
    OCI_MANIFEST: "application/vnd.oci.image.config.v1+json",
}
_MANIFEST_PATH = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")
_BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[a-f0-9]{64})$")
IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
GZIP_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _Repository:
    private: bool
    readers: set[str] | None  # None: every user
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # digest: type, body
    tags: dict[str, str] = field(default_factory=dict)  # tag: digest
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest: body


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _manifest(media_type: str, seed: str) -> bytes:
    config = {
        "mediaType": _CONFIG[media_type],
        "size": len(seed),
        "digest": _digest(seed.encode()),
    }
    return json.dumps(
        {"schemaVersion": 2, "mediaType": media_type, "config": config, "layers": []}
    ).encode()


class RegistryStandin:
    """A registry with its token service on 127.0.0.1, on a free port; see the module docstring."""

    def __init__(
        self,
        *,
        auth: str = "bearer",
        users: dict[str, str] | None = None,
        service: str = "registry.standin",
        token_field: str | None = None,
        scope_in_challenge: bool = True,
        realm: str | None = None,
    ) -> None:
        assert auth in ("bearer", "basic", "none")
        self.auth = auth
        self.users = dict(users or {})
        self.service = service
        self.token_field = token_field
        self.scope_in_challenge = scope_in_challenge
        self.realm = realm  # None: this server's /token
        self.outage: int | None = None
        self.token_outage: int | None = None
        self.requests: list[SeenRequest] = []
        self.tokens: dict[str, set[str]] = {}  # token: repositories it may pull
        self._repositories: dict[str, _Repository] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # The server.

    @property
    def host(self) -> str:
        """The registry as an image names it: 127.0.0.1:<port>."""
        assert self._server is not None, "not started"
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> RegistryStandin:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.standin = self  # type: ignore[attr-defined]
        # A short poll, so that stop() (shutdown waits for the loop to look) takes no time.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port: the registry is then down (connection refused)."""
        if self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> RegistryStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # The registry's contents.

    def push(
        self,
        name: str,
        tag: str,
        *,
        media_type: str = DOCKER_MANIFEST,
        private: bool = False,
        readers: set[str] | None = None,
    ) -> str:
        """Store a manifest of `media_type` under `name:tag`; returns its digest."""
        with self._lock:
            repository = self._repositories.setdefault(name, _Repository(private, readers))
            repository.private, repository.readers = private, readers
            seed = f"{name}:{tag}"
            if media_type in _LISTED:
                listed_type = _LISTED[media_type]
                listed = _manifest(listed_type, seed)
                repository.manifests[_digest(listed)] = (listed_type, listed)
                entry = {
                    "mediaType": listed_type,
                    "size": len(listed),
                    "digest": _digest(listed),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
                body = json.dumps(
                    {"schemaVersion": 2, "mediaType": media_type, "manifests": [entry]}
                ).encode()
            else:
                body = _manifest(media_type, seed)
            digest = _digest(body)
            repository.manifests[digest] = (media_type, body)
            repository.tags[tag] = digest
            return digest

    def push_image(
        self,
        name: str,
        tag: str,
        *,
        layer: bytes,
        config: dict,
        private: bool = False,
        readers: set[str] | None = None,
    ) -> str:
        """Store a pullable image under `name:tag`: `layer`, an uncompressed tar of its root
        filesystem; `config`, the image's run config (Cmd, Env, ...). Returns the digest of its
        Docker v2 manifest."""
        compressed = gzip.compress(layer, mtime=0)
        image_config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": config,
                "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
            }
        ).encode()
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {
                    "mediaType": IMAGE_CONFIG,
                    "size": len(image_config),
                    "digest": _digest(image_config),
                },
                "layers": [
                    {
                        "mediaType": GZIP_LAYER,
                        "size": len(compressed),
                        "digest": _digest(compressed),
                    }
                ],
            }
        ).encode()
        digest = _digest(body)
        with self._lock:
            repository = self._repositories.setdefault(name, _Repository(private, readers))
            repository.private, repository.readers = private, readers
            repository.blobs[_digest(image_config)] = image_config
            repository.blobs[_digest(compressed)] = compressed
            repository.manifests[digest] = (DOCKER_MANIFEST, body)
            repository.tags[tag] = digest
        return digest

    # What the handler asks.

    def _may_pull(self, user: str | None, name: str) -> bool:
        repository = self._repositories.get(name)
        if repository is None:
            return False
        if not repository.private:
            return True
        return user is not None and (repository.readers is None or user in repository.readers)

    def _issue(self, user: str | None, scopes: list[str]) -> str:
        granted = set()
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and "pull" in actions.split(",") and self._may_pull(user, name):
                granted.add(name)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = granted
        return token


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _errors(status: int, code: str, message: str, detail: object = None, **headers) -> _Answer:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]})
    return _Answer(status, body.encode(), {"Content-Type": "application/json", **headers})


class _Handler(BaseHTTPRequestHandler):
    server_version = "registry-standin/1.0"

    @property
    def standin(self) -> RegistryStandin:
        return self.server.standin  # type: ignore[attr-defined]

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        standin = self.standin
        with standin._lock:
            standin.requests.append(SeenRequest(self.command, self.path, dict(self.headers)))
        parts = urlsplit(self.path)
        if parts.path == "/token" and self.command == "GET":
            answer = self._token(parse_qs(parts.query))
        elif parts.path.startswith("/v2/"):
            answer = self._registry(parts.path)
            answer.headers["Docker-Distribution-Api-Version"] = "registry/2.0"
        else:
            answer = _Answer(404, b"404 page not found\n", {"Content-Type": "text/plain"})
        self.send_response(answer.status)
        for header, value in answer.headers.items():
            self.send_header(header, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def _basic_user(self) -> tuple[bool, str | None]:
        """(whether the request's Basic credentials are acceptable, whose they are)."""
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return True, None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False, None
        if user in self.standin.users and secrets.compare_digest(
            self.standin.users[user], password
        ):
            return True, user
        return False, None

    def _token(self, query: dict[str, list[str]]) -> _Answer:
        standin = self.standin
        if standin.token_outage:
            return _Answer(standin.token_outage, b"upstream unavailable\n")
        if query.get("service", [""])[0] != standin.service:
            return _Answer(400, json.dumps({"details": "invalid service"}).encode())
        valid, user = self._basic_user()
        if not valid:
            body = json.dumps({"details": "incorrect username or password"}).encode()
            return _Answer(401, body, {"Content-Type": "application/json"})
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        token = standin._issue(user, scopes)
        fields = (standin.token_field,) if standin.token_field else ("token", "access_token")
        body = {f: token for f in fields}
        body |= {"expires_in": 300, "issued_at": datetime.now(UTC).isoformat()}
        return _Answer(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _registry(self, path: str) -> _Answer:
        standin = self.standin
        if standin.outage:
            return _errors(standin.outage, "UNAVAILABLE", "service unavailable")
        match = _MANIFEST_PATH.match(path)
        blob = _BLOB_PATH.match(path)
        name = match["name"] if match else blob["name"] if blob else None
        refusal = self._refusal(name)
        if refusal is not None:
            return refusal
        if path == "/v2/":
            return _Answer(200, b"{}", {"Content-Type": "application/json"})
        if blob is not None:
            return self._blob(blob["name"], blob["digest"])
        if match is None:
            return _Answer(404, b"404 page not found\n", {"Content-Type": "text/plain"})
        return self._manifest(name, match["reference"])

    def _blob(self, name: str, digest: str) -> _Answer:
        with self.standin._lock:
            repository = self.standin._repositories.get(name)
            body = repository.blobs.get(digest) if repository else None
        if body is None:
            return _errors(404, "BLOB_UNKNOWN", "blob unknown to registry", digest)
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        return _Answer(200, body, headers)

    def _refusal(self, name: str | None) -> _Answer | None:
        """The 401 for a request that may not see `name` (or /v2/ itself), or None."""
        standin = self.standin
        if standin.auth == "none":
            return None
        detail = [{"Type": "repository", "Class": "", "Name": name, "Action": "pull"}]
        if standin.auth == "basic":
            valid, user = self._basic_user()
            if valid and user is not None:
                return None
            return _errors(
                401,
                "UNAUTHORIZED",
                "authentication required",
                detail,
                **{"WWW-Authenticate": 'Basic realm="Registry Realm"'},
            )
        header = self.headers.get("Authorization", "")
        grant = None
        if header.lower().startswith("bearer "):
            with standin._lock:
                grant = standin.tokens.get(header[7:].strip())
        if grant is not None and (name is None or name in grant):
            return None
        realm = standin.realm or f"{standin.url}/token"
        challenge = f'Bearer realm="{realm}",service="{standin.service}"'
        if name is not None and standin.scope_in_challenge:
            challenge += f',scope="repository:{name}:pull"'
        if grant is not None:
            challenge += ',error="insufficient_scope"'
        return _errors(
            401,
            "UNAUTHORIZED",
            "authentication required",
            detail,
            **{"WWW-Authenticate": challenge},
        )

    def _manifest(self, name: str, reference: str) -> _Answer:
        standin = self.standin
        with standin._lock:
            repository = standin._repositories.get(name)
            if repository is None:
                return _errors(
                    404, "NAME_UNKNOWN", "repository name not known to registry", {"name": name}
                )
            digest = reference if ":" in reference else repository.tags.get(reference)
            stored = repository.manifests.get(digest) if digest else None
        if stored is None:
            detail = {"Revision" if ":" in reference else "Tag": reference}
            return _errors(404, "MANIFEST_UNKNOWN", "manifest unknown", detail)
        media_type, body = stored
        accepted = {
            part.split(";")[0].strip()
            for line in self.headers.get_all("Accept", [])
            for part in line.split(",")
        }
        if media_type not in accepted and "*/*" not in accepted:
            return _errors(
                404,
                "MANIFEST_UNKNOWN",
                f"{media_type} found, but accept header does not support it",
                {"Tag": reference},
            )
        return _Answer(
            200,
            body,
            {"Content-Type": media_type, "Docker-Content-Digest": digest, "ETag": f'"{digest}"'},
        )
