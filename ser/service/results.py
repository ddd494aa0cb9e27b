"""Per-file rows of bulk scoring jobs in Redis, written by chunks, read by the API.

``<prefix>job:<id>:rows`` is a hash from file index to the JSON row. A chunk writes its rows
and reads the number of rows in one Lua call, so a redelivered chunk overwrites its rows
instead of adding them again: the count of rows *is* the number of files done, every file is
there exactly once, and the chunk that brings the count to the total finishes the job.

A job normalised by speakers runs in two passes. In the first, each chunk stores its
speakers' statistics (and its failed files) under its chunk index in
``<prefix>job:<id>:p1`` and reads the number of entries in one Lua call: a redelivered chunk
overwrites its entry, never counts twice, and the chunk that brings the count to the number
of chunks sends the second pass. A job with ``evaluate`` keeps its confusion-matrix PNG in
``<prefix>job:<id>:png``, as long as its rows. Light on purpose (json and a redis-py
client): the API reads rows without audio libraries.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from ser.service.redis import as_str

# KEYS: job, rows. ARGV: ttl, deadline_ts, index1, row1, index2, row2, ...
# Returns {status, rows done}; rows are only written while the job is RUNNING.
_RECORD = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'RUNNING' then return {st or '', -1} end
if #ARGV > 2 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
local n = redis.call('HLEN', KEYS[2])
redis.call('HSET', KEYS[1], 'progress_done', tostring(n), 'deadline_ts', ARGV[2])
return {st, n}
"""

# KEYS: job, entries, sizes. ARGV: ttl, deadline_ts, chunk index, entry, files in the chunk.
# Returns {status, chunks done, files featurized}; stored only while the job is RUNNING. A
# chunk's files count once in the job's FEATURIZED progress, however often it runs.
_RECORD_STATS = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'RUNNING' then return {st or '', -1, 0} end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[1])
local files = tonumber(redis.call('HGET', KEYS[1], 'featurized') or '0')
if redis.call('HSETNX', KEYS[3], ARGV[3], ARGV[5]) == 1 then
  files = redis.call('HINCRBY', KEYS[1], 'featurized', ARGV[5])
end
redis.call('EXPIRE', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'deadline_ts', ARGV[2])
return {st, redis.call('HLEN', KEYS[2]), files}
"""

CSV_COLUMNS = (
    "FILENAME",
    "EMOTION",
    "PROBABILITY",
    "ERROR_CODE",
    "ERROR_MESSAGE",
    "SPEAKER",
    "ADAPTED",
)
READ_BATCH = 1000  # rows per HMGET while streaming


class ResultStore:
    """Rows of bulk jobs under ``prefix`` in the Redis behind ``client``."""

    def __init__(self, client, prefix: str = "ser:", ttl: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = int(ttl)
        self._record = client.register_script(_RECORD)
        self._record_stats = client.register_script(_RECORD_STATS)

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def rows_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:rows"

    def files_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:files"

    def speakers_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:speakers"

    def stats_key(self, job_id: str) -> str:
        """Pass 1: chunk index -> that chunk's speakers' statistics and failed files."""
        return f"{self.prefix}job:{job_id}:p1"

    def stats_sizes_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:p1n"

    def merged_key(self, job_id: str) -> str:
        """Pass 2: speaker -> the statistics of all of the speaker's files."""
        return f"{self.prefix}job:{job_id}:stats"

    def second_pass_key(self, job_id: str) -> str:
        """Set (with the merged statistics and the pass-2 messages) once pass 2 is sent."""
        return f"{self.prefix}job:{job_id}:p2"

    def png_key(self, job_id: str) -> str:
        """The confusion-matrix PNG of a job evaluated against its folder's labels."""
        return f"{self.prefix}job:{job_id}:png"

    def save_png(self, job_id: str, png: bytes) -> None:
        """Store the job's confusion-matrix PNG, kept as long as the job's rows."""
        self.client.set(self.png_key(job_id), png, ex=self.ttl)

    def png(self, job_id: str) -> bytes | None:
        """The job's confusion-matrix PNG, or None (no evaluation, or expired)."""
        raw = self.client.get(self.png_key(job_id))
        if raw is None:
            return None
        return raw if isinstance(raw, bytes) else raw.encode()

    # -- the file list, fixed on the first listing so a redelivered job cuts the same chunks
    def save_files(
        self, job_id: str, files: list[str], speakers: list[str | None] | None = None
    ) -> list[str]:
        """Store the job's file list (its first listing: the caller found none) and, given,
        each file's speaker (None: none), in one transaction; returns the files."""
        pipe = self.client.pipeline(transaction=True)
        lists = [(self.files_key(job_id), files)]
        if speakers is not None:
            lists.append((self.speakers_key(job_id), [s or "" for s in speakers]))
        for key, items in lists:
            for start in range(0, len(items), 5000):
                pipe.rpush(key, *items[start : start + 5000])
            pipe.expire(key, self.ttl)
        pipe.execute()
        return list(files)

    def files(self, job_id: str) -> list[str]:
        return [as_str(f) for f in self.client.lrange(self.files_key(job_id), 0, -1)]

    def speakers(self, job_id: str) -> list[str | None]:
        """Each file's speaker, as saved with the file list (None: no speaker)."""
        raw = self.client.lrange(self.speakers_key(job_id), 0, -1)
        return [as_str(s) or None for s in raw]

    # -- pass 1 of a job normalised by speakers -----------------------------------------------
    def record_stats(
        self, job_id: str, index: int, entry: bytes, n_files: int, deadline_ts: float
    ) -> tuple[str, int, int]:
        """Store chunk ``index``'s pass-1 entry; returns (job status, chunks stored, files
        featurized so far; chunks -1: not stored, the job is not RUNNING)."""
        keys = [self.job_key(job_id), self.stats_key(job_id), self.stats_sizes_key(job_id)]
        args = [str(self.ttl), repr(float(deadline_ts)), str(index), entry, str(int(n_files))]
        status, done, files = self._record_stats(keys=keys, args=args)
        return as_str(status), int(done), int(files)

    def stats_entries(self, job_id: str) -> dict[int, bytes]:
        """Every chunk's pass-1 entry by chunk index."""
        raw = self.client.hgetall(self.stats_key(job_id))
        return {int(as_str(k)): v for k, v in raw.items()}

    def second_pass_inputs(
        self, job_id: str, index: int, speakers: list[str]
    ) -> tuple[bytes | None, dict[str, bytes]]:
        """(chunk ``index``'s pass-1 entry, {speaker: merged statistics} of ``speakers``), in
        one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.stats_key(job_id), str(index))
        if speakers:
            pipe.hmget(self.merged_key(job_id), speakers)
        got = pipe.execute()
        merged = dict(zip(speakers, got[1])) if speakers else {}
        return got[0], {s: v for s, v in merged.items() if v is not None}

    def save_merged(self, pipe, job_id: str, merged: dict[str, bytes]) -> None:
        """Queue the merged statistics in ``pipe`` (the transaction sending pass 2)."""
        key = self.merged_key(job_id)
        pipe.delete(key)
        items = list(merged.items())
        for start in range(0, len(items), 500):
            pipe.hset(key, mapping=dict(items[start : start + 500]))
        pipe.expire(key, self.ttl)

    def drop_passes(self, job_id: str) -> None:
        """Forget the pass-1 entries and merged statistics of a finished job."""
        self.client.delete(
            self.stats_key(job_id),
            self.stats_sizes_key(job_id),
            self.merged_key(job_id),
            self.second_pass_key(job_id),
        )

    # -- writes -------------------------------------------------------------------------------
    def record(self, job_id: str, start: int, rows: list[dict], deadline_ts: float) -> tuple:
        """Store rows for files ``start...``; returns (job status, rows done; -1: not stored)."""
        args: list = [str(self.ttl), repr(float(deadline_ts))]
        for i, row in enumerate(rows):
            args += [str(start + i), json.dumps(row, separators=(",", ":"))]
        keys = [self.job_key(job_id), self.rows_key(job_id)]
        status, done = self._record(keys=keys, args=args)
        return as_str(status), int(done)

    # -- reads --------------------------------------------------------------------------------
    def count(self, job_id: str) -> int:
        return int(self.client.hlen(self.rows_key(job_id)))

    def page(self, job_id: str, offset: int, limit: int) -> list[dict]:
        """Rows ``offset...offset+limit-1`` in file order; files not done yet are left out."""
        if limit <= 0:
            return []
        fields = [str(i) for i in range(offset, offset + limit)]
        raw = self.client.hmget(self.rows_key(job_id), fields)
        return [json.loads(r) for r in raw if r is not None]

    def iter_raw(self, job_id: str, total: int) -> Iterator[bytes]:
        """Every stored row as JSON bytes, in file order, read in batches."""
        key = self.rows_key(job_id)
        for start in range(0, total, READ_BATCH):
            fields = [str(i) for i in range(start, min(total, start + READ_BATCH))]
            for raw in self.client.hmget(key, fields):
                if raw is not None:
                    yield raw if isinstance(raw, bytes) else raw.encode()

    def all_rows(self, job_id: str, total: int) -> list[dict]:
        return [json.loads(r) for r in self.iter_raw(job_id, total)]


def summarize(rows: list[dict], classes: list[str] | None = None) -> dict:
    """Counts of a finished job: COUNT, SUCCEEDED, FAILED and SUMMARY {emotion: count}
    (rows with speakers: also SPEAKER_COUNT, distinct speakers, and ADAPTED_COUNT, rows adapted)."""
    summary = {c: 0 for c in classes or []}
    failed = 0
    for row in rows:
        if "ERROR" in row:
            failed += 1
        else:
            summary[row["EMOTION"]] = summary.get(row["EMOTION"], 0) + 1
    out = {
        "COUNT": len(rows),
        "SUCCEEDED": len(rows) - failed,
        "FAILED": failed,
        "SUMMARY": summary,
    }
    if rows and "SPEAKER" in rows[0]:
        out["SPEAKER_COUNT"] = len({r["SPEAKER"] for r in rows if r.get("SPEAKER") is not None})
        out["ADAPTED_COUNT"] = sum(1 for r in rows if r.get("ADAPTED"))
    return out


def stream_jsonl(raw_rows: Iterator[bytes]) -> Iterator[bytes]:
    """JSON Lines, one row a line, in blocks of about 64 KB."""
    buf: list[bytes] = []
    size = 0
    for raw in raw_rows:
        buf.append(raw + b"\n")
        size += len(raw) + 1
        if size >= 65536:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


def _cell(value) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (file names come from users)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def stream_csv(raw_rows: Iterator[bytes]) -> Iterator[str]:
    """CSV with a header (errors as ERROR_CODE, ERROR_MESSAGE; SPEAKER and ADAPTED empty for
    a job without speakers), in blocks of about 64 KB."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for raw in raw_rows:
        row = json.loads(raw)
        err = row.get("ERROR") or {}
        adapted = row.get("ADAPTED")
        writer.writerow(
            (
                _cell(row.get("FILENAME", "")),
                row.get("EMOTION", ""),
                row.get("PROBABILITY", ""),
                err.get("CODE", ""),
                _cell(err.get("MESSAGE", "")),
                _cell(row.get("SPEAKER") or ""),
                "" if adapted is None else ("true" if adapted else "false"),
            )
        )
        if out.tell() >= 65536:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
