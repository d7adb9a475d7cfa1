"""Image pulls for the pods of one node: pull policy, ImageStatus before PullImage, credentials, back-off.

Follows the kubelet's `images/image_manager.go` EnsureImageExists: `Never` uses what is present or fails with
ErrImageNeverPull; `IfNotPresent` asks ImageStatus first; `Always` pulls. A failed pull is ErrImagePull, and the
next attempts within the back-off window are ImagePullBackOff (10 s doubling to 5 min) without contacting the
registry. Credentials come from the pod's imagePullSecrets (`.dockerconfigjson` / `.dockercfg`), matched by
registry host. Images named `localhost/...` exist only on this machine (built and imported by kates): when present
they are never pulled, whatever the policy, since no registry could answer for them.
"""
from __future__ import annotations

import base64
import json
import logging
from typing import Any

from ..api import errors
from ..client.events import EventRecorder
from ..client.rest import Client, resource
from ..runtime.interface import AuthConfig, ImagePullError, ImageService, RuntimeServiceError
from .backoff import Backoff

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SECRETS = resource("secrets")


class ImageError(Exception):
    """Why a container cannot start for its image: `reason` is the container's waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def pull_policy(ctr: Obj) -> str:
    """The defaulted imagePullPolicy: Always for `:latest` or untagged images, else IfNotPresent."""
    policy = ctr.get("imagePullPolicy")
    if policy:
        return policy
    image = ctr.get("image", "")
    last = image.rsplit("/", 1)[-1]
    if "@" in image:
        return "IfNotPresent"
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


def registry_host(image: str) -> str:
    """The registry an image reference names (`docker.io` when it names none)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _matches(server: str, host: str) -> bool:
    server = server.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    if host == "docker.io":
        return server in ("docker.io", "index.docker.io", "registry-1.docker.io")
    return server == host


def auth_from_secret(secret: Obj, host: str) -> AuthConfig | None:
    """The credentials a dockerconfigjson (or legacy dockercfg) Secret holds for registry `host`."""
    data = secret.get("data") or {}
    raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
    if not raw:
        return None
    try:
        config = json.loads(base64.b64decode(raw))
    except (ValueError, TypeError):
        return None
    auths = config.get("auths", config) if isinstance(config, dict) else {}
    for server, entry in auths.items():
        if not isinstance(entry, dict) or not _matches(server, host):
            continue
        user, password = entry.get("username", ""), entry.get("password", "")
        auth = entry.get("auth", "")
        if auth and not user:
            try:
                user, _, password = base64.b64decode(auth).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                pass
        return AuthConfig(username=user, password=password, auth=auth, server_address=server)
    return None


class ImageManager:
    """Ensures a container's image is present before the kubelet creates the container."""

    def __init__(self, runtime: ImageService, client: Client, recorder: EventRecorder,
                 backoff: Backoff | None = None) -> None:
        self.runtime = runtime
        self.client = client
        self.recorder = recorder
        self.backoff = backoff or Backoff()

    async def _auth(self, pod: Obj, image: str) -> AuthConfig | None:
        host = registry_host(image)
        for ref in pod["spec"].get("imagePullSecrets") or []:
            try:
                secret = await self.client.get(SECRETS, ref.get("name", ""), pod["metadata"]["namespace"])
            except errors.NotFound:
                log.debug("imagePullSecret %s not found", ref.get("name"))
                continue
            auth = auth_from_secret(secret, host)
            if auth is not None:
                return auth
        return None

    async def ensure_image(self, pod: Obj, ctr: Obj) -> str:
        """The image reference to create the container with, pulling it if the policy says so.

        Raises ImageError(ErrImageNeverPull | ErrImagePull | ImagePullBackOff | InvalidImageName)."""
        image = ctr.get("image", "")
        if not image:
            raise ImageError("InvalidImageName", "Failed to apply default image tag \"\": couldn't parse image name")
        policy = pull_policy(ctr)
        try:
            present = await self.runtime.image_status(image)
        except RuntimeServiceError as e:
            present = None
            log.debug("image status %s: %s", image, e)
        local_only = registry_host(image) == "localhost"
        if present is not None and (policy != "Always" or local_only):
            self.recorder.event(pod, "Normal", "Pulled", f"Container image \"{image}\" already present on machine")
            return image
        if policy == "Never":
            message = f"Container image \"{image}\" is not present with pull policy of Never"
            self.recorder.event(pod, "Warning", "ErrImageNeverPull", message)
            raise ImageError("ErrImageNeverPull", message)
        key = f"{pod['metadata']['uid']}/{image}"
        if self.backoff.in_backoff_since_update(key):
            message = f"Back-off pulling image \"{image}\""
            self.recorder.event(pod, "Normal", "BackOff", message)
            raise ImageError("ImagePullBackOff", message)
        self.recorder.event(pod, "Normal", "Pulling", f"Pulling image \"{image}\"")
        started = self.backoff.clock()
        try:
            await self.runtime.pull_image(image, await self._auth(pod, image))
        except (ImagePullError, RuntimeServiceError) as e:
            self.backoff.next(key)
            message = f"Failed to pull image \"{image}\": {e}"
            self.recorder.event(pod, "Warning", "Failed", message)
            self.recorder.event(pod, "Warning", "Failed", "Error: ErrImagePull")
            raise ImageError("ErrImagePull", message) from e
        self.backoff.reset(key)
        took = self.backoff.clock() - started
        self.recorder.event(pod, "Normal", "Pulled", f"Successfully pulled image \"{image}\" in {took:.3f}s")
        return image

    def retry_after(self, pod: Obj, ctr: Obj) -> float:
        """Seconds until the next pull of this container's image may be tried."""
        return self.backoff.remaining_since_update(f"{pod['metadata']['uid']}/{ctr.get('image', '')}")
