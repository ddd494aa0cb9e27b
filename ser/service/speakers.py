"""Per-speaker feature statistics in Redis: what speaker adaptation normalises a clip with.

``<prefix>speaker:<id>`` is a hash from feature-spec version to the speaker's
:class:`ser.ml.stats.Stats` (count, mean, M2) in its ``to_bytes`` form; every clip predicted with
that speaker adds its feature vector. The update is one Lua call (Chan's merge of one row,
the same arithmetic as ``Stats.merge``), so concurrent predictions of one speaker never lose
an update. ``<prefix>speaker-job:<job id>`` records, per spec version, that a job's clip was
added (in the same call, kept as long as job records): a redelivered prediction never counts
its clip twice.

A prediction spends no extra round trip on this: it reads the speaker's hash and its job's
marker with the job's start (:meth:`SpeakerStore.queue_read`), merges its own clip locally to
classify, and queues the atomic update with its result (:meth:`SpeakerStore.queue_add`).

Light on purpose (struct and a redis-py client): the API lists and forgets speakers without
numpy or scikit-learn; ``ser.ml.stats`` (numpy) is imported only where statistics are built.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ser.errors import SerError
from ser.service.redis import as_str

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ser.ml.stats import Stats

MAX_SPEAKER_LEN = 128
_HEAD = struct.Struct("<qq")  # Stats.to_bytes: count, dimension, then float64 mean and m2
_CHUNK = 100  # doubles per struct call in the script (bounded Lua stack)

# KEYS: speaker hash, job marker. ARGV: spec version, the clip's float64 row (little
# endian), marker ttl. Adds the row to the spec's statistics unless this job already did;
# returns {1 added / 0 already there, the statistics' bytes (false: none)}.
_ADD = f"""
local spec, x = ARGV[1], ARGV[2]
local cur = redis.call('HGET', KEYS[1], spec)
if redis.call('HEXISTS', KEYS[2], spec) == 1 then return {{0, cur}} end
local dim = #x / 8
local n, d = 0, dim
if cur then n, d = struct.unpack('<i8i8', cur) end
if d ~= dim or (cur and #cur ~= 16 + 16 * dim) then
  return redis.error_reply('SPEAKER_STATS_INVALID stored statistics of another size')
end
redis.call('HSET', KEYS[2], spec, '1')
redis.call('EXPIRE', KEYS[2], ARGV[3])
local out
if not cur then
  out = struct.pack('<i8i8', 1, dim) .. x .. string.rep('\\0', 8 * dim)
else
  local nn = n + 1
  local wm, wv = 1 / nn, n * 1 / nn
  local means, m2s = {{}}, {{}}
  for i = 0, dim - 1, {_CHUNK} do
    local k = math.min({_CHUNK}, dim - i)
    local fmt = '<' .. string.rep('d', k)
    local xs = {{struct.unpack(fmt, x, 8 * i + 1)}}
    local ms = {{struct.unpack(fmt, cur, 17 + 8 * i)}}
    local vs = {{struct.unpack(fmt, cur, 17 + 8 * dim + 8 * i)}}
    for j = 1, k do
      local delta = xs[j] - ms[j]
      ms[j] = ms[j] + delta * wm
      vs[j] = (vs[j] + 0.0) + delta * delta * wv
    end
    means[#means + 1] = struct.pack(fmt, unpack(ms, 1, k))
    m2s[#m2s + 1] = struct.pack(fmt, unpack(vs, 1, k))
  end
  out = struct.pack('<i8i8', nn, dim) .. table.concat(means) .. table.concat(m2s)
end
redis.call('HSET', KEYS[1], spec, out)
return {{1, out}}
"""


class InvalidSpeaker(SerError):
    """A speaker id the service does not accept."""

    code = "INVALID_SPEAKER"
    http_status = 400


class SpeakerNotFound(SerError):
    """A speaker with no statistics."""

    code = "SPEAKER_NOT_FOUND"
    http_status = 404


def check_speaker(value) -> str:
    """``value`` as a speaker id: a string of 1..128 printable characters (no control or
    separator characters but the space, no lone surrogates), not blank, without ``/`` (it
    names a URL path segment) and not ``.`` or ``..``; raises :class:`InvalidSpeaker`."""
    if not isinstance(value, str):
        raise InvalidSpeaker(message="'speaker' must be a string")
    if not 1 <= len(value) <= MAX_SPEAKER_LEN:
        raise InvalidSpeaker(message=f"'speaker' must be 1 to {MAX_SPEAKER_LEN} characters")
    if not value.isprintable() or not value.strip() or "/" in value or value in (".", ".."):
        raise InvalidSpeaker(
            message="'speaker' must be printable text without control characters or '/'"
        )
    return value


def clip_count(data: bytes) -> int:
    """The number of clips in statistics bytes (``Stats.to_bytes``), without numpy (0 for
    bytes too short to say)."""
    return int(_HEAD.unpack_from(data)[0]) if len(data) >= _HEAD.size else 0


class SpeakerStore:
    """Speaker statistics under ``prefix`` in the Redis behind ``client`` (binary-safe);
    ``marker_ttl``: how long a job's "added" mark is kept (the job records' TTL)."""

    def __init__(self, client, prefix: str = "ser:", marker_ttl: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.prefix = prefix
        self.marker_ttl = int(marker_ttl)

    def key(self, speaker: str) -> str:
        return f"{self.prefix}speaker:{speaker}"

    def marker_key(self, job_id: str) -> str:
        return f"{self.prefix}speaker-job:{job_id}"

    # -- API side: no numpy -------------------------------------------------------------------
    def clips(self, speaker: str) -> dict[str, int]:
        """Clips per feature-spec version ({} for an unknown speaker)."""
        raw = self.client.hgetall(self.key(speaker))
        return {as_str(k): clip_count(v) for k, v in sorted(raw.items())}

    def forget(self, speaker: str) -> dict[str, int]:
        """Delete a speaker's statistics; returns what they held ({}: nothing to delete)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self.key(speaker))
        pipe.delete(self.key(speaker))
        raw = pipe.execute()[0]
        return {as_str(k): clip_count(v) for k, v in sorted(raw.items())}

    # -- worker side ----------------------------------------------------------------------------
    def stats(self, speaker: str, spec: str) -> Stats | None:
        """The speaker's statistics for feature spec ``spec`` (None: no clip yet)."""
        return _decode(self.client.hget(self.key(speaker), spec), speaker)

    def add(self, speaker: str, spec: str, x: np.ndarray, job_id: str) -> Stats:
        """Add job ``job_id``'s feature row ``x`` (once, however often it is called) and
        return the speaker's statistics with it: one atomic round trip."""
        pipe = self.client.pipeline(transaction=False)
        self.queue_add(pipe, speaker, spec, x, job_id)
        _, data = pipe.execute()[0]
        return _decode(data, speaker)

    def queue_read(self, pipe, speaker: str, job_id: str) -> None:
        """Queue the reads a prediction needs (two replies for :meth:`merged`)."""
        pipe.hgetall(self.key(speaker))
        pipe.hgetall(self.marker_key(job_id))

    def merged(self, replies: list, speaker: str, spec: str, x: np.ndarray) -> Stats:
        """The speaker's statistics with this job's row ``x`` from :meth:`queue_read`'s two
        replies (the row counted once: a redelivered job finds it already there)."""
        # numpy only in the worker, which builds statistics: the API never loads it.
        import numpy as np

        from ser.ml.stats import Stats

        stored_all, marker = replies
        stored = _decode(_field(stored_all, spec), speaker)
        if stored is not None and stored.mean.shape != np.shape(x):
            raise _invalid(speaker)
        if stored is not None and _field(marker, spec) is not None:
            return stored  # this job's clip is in them already (a redelivery)
        return Stats.of(x) if stored is None else stored.merge(Stats.of(x))

    def queue_add(self, pipe, speaker: str, spec: str, x: np.ndarray, job_id: str) -> None:
        """Queue the atomic update that adds job ``job_id``'s row ``x`` (see :meth:`add`)."""
        import numpy as np  # worker side only, as above

        row = np.ascontiguousarray(x, dtype="<f8").ravel().tobytes()
        keys = [self.key(speaker), self.marker_key(job_id)]
        # plain EVAL: a registered script costs a SCRIPT EXISTS per pipeline
        pipe.eval(_ADD, len(keys), *keys, spec, row, str(self.marker_ttl))


def _field(raw: dict, name: str):
    return raw.get(name.encode(), raw.get(name)) if raw else None


def _invalid(speaker: str) -> SerError:
    return SerError(
        "SPEAKER_STATS_INVALID",
        f"the statistics stored for speaker {speaker!r} are unreadable; "
        "DELETE /speakers/<id> resets them",
    )


def _decode(data, speaker: str) -> Stats | None:
    if not data:
        return None
    from ser.ml.stats import Stats  # numpy: worker side only

    try:
        return Stats.from_bytes(data)
    except (ValueError, struct.error):
        raise _invalid(speaker) from None
