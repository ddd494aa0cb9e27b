"""Per-file rows of bulk scoring jobs in Redis, written by chunks, read by the API.

``<prefix>job:<id>:rows`` is a hash from file index to the JSON row. A chunk writes its rows
and reads the number of rows in one Lua call, so a redelivered chunk overwrites its rows
instead of adding them again: the count of rows *is* the number of files done, every file is
there exactly once, and the chunk that brings the count to the total finishes the job.
Light on purpose (json and a redis-py client): the API reads rows without audio libraries.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from ser.store import as_str

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

CSV_COLUMNS = ("FILENAME", "EMOTION", "PROBABILITY", "ERROR_CODE", "ERROR_MESSAGE")
READ_BATCH = 1000  # rows per HMGET while streaming


class ResultStore:
    """Rows of bulk jobs under ``prefix`` in the Redis behind ``client``."""

    def __init__(self, client, prefix: str = "ser:", ttl: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = int(ttl)
        self._record = client.register_script(_RECORD)

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def rows_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:rows"

    def files_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:files"

    # -- the file list, fixed on the first listing so a redelivered job cuts the same chunks
    def save_files(self, job_id: str, files: list[str]) -> list[str]:
        """Store the job's file list (its first listing: the caller found none); returns it."""
        key = self.files_key(job_id)
        pipe = self.client.pipeline(transaction=True)
        for start in range(0, len(files), 5000):
            pipe.rpush(key, *files[start : start + 5000])
        pipe.expire(key, self.ttl)
        pipe.execute()
        return list(files)

    def files(self, job_id: str) -> list[str]:
        return [as_str(f) for f in self.client.lrange(self.files_key(job_id), 0, -1)]

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
    """Counts of a finished job: COUNT, SUCCEEDED, FAILED and SUMMARY {emotion: count}."""
    summary = {c: 0 for c in classes or []}
    failed = 0
    for row in rows:
        if "ERROR" in row:
            failed += 1
        else:
            summary[row["EMOTION"]] = summary.get(row["EMOTION"], 0) + 1
    return {
        "COUNT": len(rows),
        "SUCCEEDED": len(rows) - failed,
        "FAILED": failed,
        "SUMMARY": summary,
    }


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
    """CSV with a header (errors as ERROR_CODE, ERROR_MESSAGE), in blocks of about 64 KB."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for raw in raw_rows:
        row = json.loads(raw)
        err = row.get("ERROR") or {}
        writer.writerow(
            (
                _cell(row.get("FILENAME", "")),
                row.get("EMOTION", ""),
                row.get("PROBABILITY", ""),
                err.get("CODE", ""),
                _cell(err.get("MESSAGE", "")),
            )
        )
        if out.tell() >= 65536:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
