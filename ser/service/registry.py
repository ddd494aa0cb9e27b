"""Model versions in Redis: signed bundle bytes, metadata, a confusion PNG, a `current` pointer.

Layout under the key prefix:

- ``model:<version>`` hash: ``meta`` (JSON), ``bundle`` (bytes), ``sig`` (hex HMAC), ``png``
- ``models`` sorted set of versions by sequence number; ``model:seq`` the counter
- ``model:current`` the version served by every worker

Artifacts are signed with HMAC-SHA256 under SER_SECRET_KEY over the version and the bytes;
a bundle is only unpickled after its signature verifies. Metadata reads never load a bundle,
so the API can use this module without scikit-learn (``ser.ml.bundle`` is imported lazily).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Callable
from typing import Any

import redis

from ser.errors import ModelIntegrityError, NoModelError, SerError
from ser.service.redis import as_str

VERSION_RE = re.compile(r"^v[0-9]{1,9}$")
_SIG_CONTEXT = b"ser-model-bundle/1\n"


def sign(key: bytes, version: str, data: bytes) -> str:
    """Hex HMAC-SHA256 of ``data`` bound to ``version``."""
    mac = hmac.new(key, _SIG_CONTEXT + version.encode() + b"\n", hashlib.sha256)
    mac.update(data)
    return mac.hexdigest()


class UnknownVersion(SerError):
    """A model version that is not in the registry."""

    code = "MODEL_NOT_FOUND"
    http_status = 404


class ModelIsCurrent(SerError):
    """The current model cannot be deleted (activate another version first)."""

    code = "MODEL_IS_CURRENT"
    http_status = 409


class Registry:
    """The model registry under ``prefix`` in the Redis behind ``client`` (binary-safe)."""

    def __init__(self, client, prefix: str = "ser:") -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, version: str) -> str:
        return f"{self.prefix}model:{version}"

    @property
    def current_key(self) -> str:
        return f"{self.prefix}model:current"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}models"

    # -- writes -------------------------------------------------------------------------------
    def publish(
        self,
        data: bytes,
        meta: dict,
        key: bytes,
        *,
        png: bytes | Callable[[str], bytes] | None = None,
        activate: bool = True,
    ) -> str:
        """Store signed bundle bytes with ``meta``; returns the new version (e.g. "v3").

        ``png`` may be a function of the new version (a picture titled with it); with
        ``activate=False`` the version is kept aside and `current` does not move."""
        seq = int(self.client.incr(f"{self.prefix}model:seq"))
        version = f"v{seq}"
        if callable(png):
            png = png(version)
        meta = dict(
            meta,
            version=version,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        fields: dict[str, Any] = {
            "meta": json.dumps(meta),
            "bundle": data,
            "sig": sign(key, version, data),
        }
        if png:
            fields["png"] = png
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._key(version), mapping=fields)
        pipe.zadd(self.index_key, {version: seq})
        if activate:
            pipe.set(self.current_key, version)
        pipe.execute()
        return version

    def activate(self, version: str, key: bytes | None = None) -> dict:
        """Point `current` at ``version`` (verifying its signature when ``key`` is given)."""
        meta = self.meta(version)
        if key is not None:
            self._verified_bytes(version, key)
        self.client.set(self.current_key, version)
        return meta

    def delete(self, version: str) -> dict:
        """Remove ``version`` (bundle, signature, metadata, PNG) unless it is current; returns
        its metadata. Raises UnknownVersion, or ModelIsCurrent (checked and deleted in one
        transaction watching the `current` pointer, so an activation cannot slip between)."""
        key = self._key(version)
        while True:
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self.current_key, key)
                    meta = self.meta(version)
                    current = pipe.get(self.current_key)
                    if current is not None and as_str(current) == version:
                        raise ModelIsCurrent(
                            message=f"{version} is the current model: activate another first"
                        )
                    pipe.multi()
                    pipe.delete(key)
                    pipe.zrem(self.index_key, version)
                    pipe.execute()
                    return meta
                except redis.WatchError:
                    continue

    def exists(self, version: str) -> bool:
        """Whether ``version`` is (still) stored."""
        return bool(VERSION_RE.match(version)) and bool(
            self.client.hexists(self._key(version), "sig")
        )

    # -- reads --------------------------------------------------------------------------------
    def current(self) -> str | None:
        """The version every worker serves, or None before the first training."""
        value = self.client.get(self.current_key)
        return as_str(value) if value else None

    def versions(self) -> list[str]:
        """Every stored version, oldest first."""
        return [as_str(v) for v in self.client.zrange(self.index_key, 0, -1)]

    def meta(self, version: str) -> dict:
        """Metadata and metrics of ``version`` (raises UnknownVersion)."""
        raw = self.client.hget(self._key(version), "meta") if VERSION_RE.match(version) else None
        if not raw:
            raise UnknownVersion(message=f"no model version {version!r}")
        return json.loads(raw)

    def all_meta(self) -> list[dict]:
        """Metadata of every version, newest first."""
        versions = self.versions()[::-1]
        pipe = self.client.pipeline(transaction=False)
        for v in versions:
            pipe.hget(self._key(v), "meta")
        return [json.loads(raw) for raw in pipe.execute() if raw]

    def confusion_png(self, version: str) -> bytes:
        """The stored confusion-matrix PNG of ``version``."""
        self.meta(version)
        png = self.client.hget(self._key(version), "png")
        if not png:
            raise UnknownVersion("NO_CONFUSION_PNG", f"no confusion matrix stored for {version}")
        return png if isinstance(png, bytes) else png.encode()

    def _verified_bytes(self, version: str, key: bytes) -> bytes:
        data, sig = self.client.hmget(self._key(version), ["bundle", "sig"])
        if data is None:
            raise UnknownVersion(message=f"no model version {version!r}")
        expected = sign(key, version, data)
        if not sig or not hmac.compare_digest(as_str(sig), expected):
            raise ModelIntegrityError(
                message=f"model {version}: signature does not verify; the artifact is refused"
            )
        return data

    def load(self, version: str, key: bytes, loader: Callable[[bytes], Any]):
        """The model of ``version``: ``loader`` (e.g. ``Bundle.from_bytes``) is given its
        bytes only after their signature verifies. The loader is passed in, so the API uses
        this module without importing scikit-learn."""
        return loader(self._verified_bytes(version, key))


class BundleCache:
    """Per-process cache of the loaded current bundle, keyed by version.

    ``get()`` reads the `current` pointer (one GET) per call, so a new or re-activated version
    is served by the next task in every process without a restart.
    """

    def __init__(self, registry: Registry, key: bytes, loader: Callable[[bytes], Any]) -> None:
        self.registry = registry
        self.key = key
        self.loader = loader
        self._version: str | None = None
        self._bundle = None
        self._others: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, version: str | None = None) -> tuple[str, Any]:
        """(version, bundle) of the current model, or of ``version`` when given (a bulk job
        pinned to one version); raises NoModelError before any training."""
        if version is not None:
            return version, self._pinned(version)
        return self.current(self.registry.current())

    def current(self, version: str | None) -> tuple[str, Any]:
        """(version, bundle) for the `current` pointer as just read (None: no model yet)."""
        if version is None:
            raise NoModelError(message="no model has been trained yet: POST /train first")
        with self._lock:
            if version != self._version:
                bundle = self.registry.load(version, self.key, self.loader)
                self._version, self._bundle = version, bundle
            return self._version, self._bundle

    def _pinned(self, version: str):
        # A cached copy of a version deleted since is not served (one HEXISTS per call).
        if not self.registry.exists(version):
            raise UnknownVersion(
                message=f"model {version} (pinned for this job) was deleted from the registry"
            )
        with self._lock:
            if version == self._version:
                return self._bundle
            if version not in self._others:
                # A second slot: a bulk job pinned to an older version does not evict the
                # current model that single predictions keep using.
                self._others = {version: self.registry.load(version, self.key, self.loader)}
            return self._others[version]
