"""Per-file rows of bulk scoring jobs in Redis, written by chunks, read by the API.

``<prefix>job:<id>:rows`` is a hash from file index to the JSON row. A chunk writes its rows
and reads the number of rows in one Lua call, so a redelivered chunk overwrites its rows
instead of adding them again: the count of rows *is* the number of files done, every file is
there exactly once, and the chunk that brings the count to the total finishes the job.

A job with segments stores, under each file's index, the list of its rows (one per speech
segment; one row for a file that fails or holds no speech), so the count of files done stays
the count of entries; readers flatten the lists (the CSV then has START and END). The same
Lua call keeps each file's number of rows (and their sum) in ``<prefix>job:<id>:nrows``, so a
page of rows (:meth:`ResultStore.page_rows`) is found without reading the files before it. A
recording
spread over several chunks (worker/segments.py) keeps each pass's entries by chunk index
under ``<prefix>job:<id>:seg:<file>:p1``/``p2``, recorded as pass 1 below.

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

from ser import speech_time
from ser.service.redis import as_str

# KEYS: job, rows, row counts. ARGV: ttl, deadline_ts, 2 or 3 (values per file), then index1,
# row1[, n1], index2, row2[, n2], ... (3: each file's value is its list of n rows, whose count
# is kept under its index in the row counts, their sum under 'total'). Returns {status, files
# done}; rows are only written while the job is RUNNING.
_RECORD = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'RUNNING' then return {st or '', -1} end
local step = tonumber(ARGV[3])
local rows = {}
for i = 4, #ARGV, step do
  rows[#rows + 1] = ARGV[i]
  rows[#rows + 1] = ARGV[i + 1]
  if step == 3 then
    local old = tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '0')
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
    redis.call('HINCRBY', KEYS[3], 'total', tonumber(ARGV[i + 2]) - old)
  end
end
if #rows > 0 then
  redis.call('HSET', KEYS[2], unpack(rows))
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
if step == 3 then redis.call('EXPIRE', KEYS[3], ARGV[1]) end
local n = redis.call('HLEN', KEYS[2])
redis.call('HSET', KEYS[1], 'progress_done', tostring(n), 'deadline_ts', ARGV[2])
return {st, n}
"""

# KEYS: job, entries, sizes. ARGV: ttl, deadline_ts, chunk index, entry, the chunk's amount,
# the job field that counts amounts, 1 to set progress_done to half that count (rounded down).
# Returns {status, chunks done, amounts so far}; stored only while the job is RUNNING. A
# chunk's amount counts once, however often it runs (pass 1 of a job normalised by speakers:
# files featurized; a segmented recording: seconds of audio, each pass counting half).
_RECORD_ENTRY = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'RUNNING' then return {st or '', -1, '0'} end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[1])
local total = redis.call('HGET', KEYS[1], ARGV[6]) or '0'
if redis.call('HSETNX', KEYS[3], ARGV[3], ARGV[5]) == 1 then
  total = redis.call('HINCRBYFLOAT', KEYS[1], ARGV[6], ARGV[5])
end
redis.call('EXPIRE', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'deadline_ts', ARGV[2])
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'progress_done', tostring(math.floor(tonumber(total) / 2)))
end
return {st, redis.call('HLEN', KEYS[2]), tostring(total)}
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
# A job with segments: a row per segment; one probability column per class follows (P_<class>).
SEGMENT_CSV_COLUMNS = (
    "FILENAME",
    "START",
    "END",
    "EMOTION",
    "PROBABILITY",
    "ERROR_CODE",
    "ERROR_MESSAGE",
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
        self._record_entry = client.register_script(_RECORD_ENTRY)

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def rows_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:rows"

    def counts_key(self, job_id: str) -> str:
        """A job with segments: file index -> its number of rows; ``total``: their sum."""
        return f"{self.prefix}job:{job_id}:nrows"

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
        keys = (self.stats_key(job_id), self.stats_sizes_key(job_id))
        status, done, files = self.record_entry(
            job_id, keys, index, entry, int(n_files), "featurized", deadline_ts
        )
        return status, done, int(files)

    def record_entry(
        self,
        job_id: str,
        keys: tuple[str, str],
        index: int,
        entry: bytes | str,
        amount: float,
        field: str,
        deadline_ts: float,
        progress: bool = False,
    ) -> tuple[str, int, float]:
        """Store chunk ``index``'s ``entry`` in the hash ``keys[0]`` (``keys[1]``: the chunks
        counted so far) and add its ``amount`` to the job's ``field`` once; returns (job
        status, entries stored (-1: not stored, the job is not RUNNING), the field's sum).
        ``progress``: the job's DONE becomes half the sum (two passes over the audio)."""
        args = [
            str(self.ttl),
            repr(float(deadline_ts)),
            str(index),
            entry,
            repr(float(amount)) if not float(amount).is_integer() else str(int(amount)),
            field,
            "1" if progress else "0",
        ]
        status, done, total = self._record_entry(keys=[self.job_key(job_id), *keys], args=args)
        return as_str(status), int(done), float(as_str(total))

    # -- a recording segmented over several chunks (worker/segments.py) ----------------------
    def segment_key(self, job_id: str, file: int, what: str) -> str:
        """Keys of file ``file`` of a job with segments: ``p1``/``p2`` (each pass's entries by
        chunk index), ``p1n``/``p2n`` (their amounts), ``sent1``/``sent2`` (pass sent),
        ``done`` (delivered)."""
        return f"{self.prefix}job:{job_id}:seg:{file}:{what}"

    def segment_entries(self, job_id: str, file: int, phase: int, n: int) -> Iterator[bytes | None]:
        """The ``n`` entries of a pass of file ``file``, in chunk order, read one at a time
        (pass 2 holds the windows' features: a few hundred KB an entry); None for an entry
        that is gone (the file was delivered, and its entries dropped, by another chunk)."""
        key = self.segment_key(job_id, file, f"p{phase}")
        for index in range(n):
            yield self.client.hget(key, str(index))

    def drop_segments(self, job_id: str, file: int) -> None:
        """Forget the entries of a delivered file and mark it delivered (the mark and its sent
        flags stay as long as the job's records, so a late duplicate chunk neither sends nor
        records anything again: :meth:`delivered`)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.segment_key(job_id, file, "done"), "1", ex=self.ttl)
            pipe.delete(*(self.segment_key(job_id, file, w) for w in ("p1", "p1n", "p2", "p2n")))
            pipe.execute()

    def delivered(self, job_id: str, file: int) -> bool:
        """Whether file ``file`` of a job with segments has been delivered."""
        return bool(self.client.exists(self.segment_key(job_id, file, "done")))

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
        return self.record_at(job_id, {start + i: row for i, row in enumerate(rows)}, deadline_ts)

    def record_at(self, job_id: str, rows: dict, deadline_ts: float) -> tuple:
        """Store ``{file index: row}`` (a job with segments: the file's list of rows, whose
        count is kept with it for :meth:`page_rows`); returns (job status, files done; -1: not
        stored)."""
        lists = any(isinstance(row, list) for row in rows.values())
        args: list = [str(self.ttl), repr(float(deadline_ts)), "3" if lists else "2"]
        for i, row in rows.items():
            args += [str(i), json.dumps(row, separators=(",", ":"))]
            if lists:
                args.append(str(len(_rows(row))))
        keys = [self.job_key(job_id), self.rows_key(job_id), self.counts_key(job_id)]
        status, done = self._record(keys=keys, args=args)
        return as_str(status), int(done)

    # -- reads --------------------------------------------------------------------------------
    def count(self, job_id: str) -> int:
        return int(self.client.hlen(self.rows_key(job_id)))

    def page(self, job_id: str, offset: int, limit: int) -> list[dict]:
        """Rows of files ``offset...offset+limit-1`` in file order (a job with segments: every
        row of those files); files not done yet are left out."""
        if limit <= 0:
            return []
        fields = [str(i) for i in range(offset, offset + limit)]
        raw = self.client.hmget(self.rows_key(job_id), fields)
        return [row for r in raw if r is not None for row in _rows(json.loads(r))]

    def page_rows(
        self, job_id: str, offset: int, limit: int, total: int
    ) -> tuple[list[dict], bool]:
        """A job with segments: rows ``offset...offset+limit-1`` of all its rows in file then
        time order (a file that failed or holds no speech: one row), and whether a row follows
        them. The rows counted are those of the files done from the first one up to the first
        not done yet (all of them once the job has finished), so a row's position never
        changes: pages neither lose nor repeat a row. Reads each file's row count (kept with
        its rows), then only the files that the page overlaps."""
        if limit <= 0:
            return [], False
        end = offset + limit
        rows_key, counts_key = self.rows_key(job_id), self.counts_key(job_id)
        pos = 0  # rows of the files before ``index``
        wanted: list[tuple[int, int]] = []  # (file index, position of its first row)
        more = False
        for start in range(0, total, READ_BATCH):
            fields = [str(i) for i in range(start, min(total, start + READ_BATCH))]
            counts = self.client.hmget(counts_key, fields)
            missing = [f for f, n in zip(fields, counts) if n is None]
            # a file with no count: not done yet, or stored before counts were kept
            legacy = dict(zip(missing, self.client.hmget(rows_key, missing))) if missing else {}
            for field, n in zip(fields, counts):
                if n is None:
                    raw = legacy.get(field)
                    if raw is None:  # not done yet: the rows counted end here
                        return self._rows_at(rows_key, wanted, offset, end), False
                    n = len(_rows(json.loads(raw)))
                n = int(n)
                if pos + n > offset and pos < end:
                    wanted.append((int(field), pos))
                pos += n
                if pos > end:
                    more = True
                    break
            if more:
                break
        return self._rows_at(rows_key, wanted, offset, end), more

    def _rows_at(
        self, rows_key: str, wanted: list[tuple[int, int]], offset: int, end: int
    ) -> list[dict]:
        """The rows at positions ``offset...end-1`` of the files ``wanted`` (index, position
        of its first row)."""
        if not wanted:
            return []
        raw = self.client.hmget(rows_key, [str(i) for i, _ in wanted])
        out: list[dict] = []
        for (_, first), value in zip(wanted, raw):
            rows = _rows(json.loads(value)) if value is not None else []
            out += rows[max(0, offset - first) : max(0, end - first)]
        return out

    def row_count(self, job_id: str) -> int | None:
        """A job with segments: its rows stored so far (None: stored before they were
        counted)."""
        n = self.client.hget(self.counts_key(job_id), "total")
        return None if n is None else int(n)

    def iter_files(self, job_id: str, total: int) -> Iterator[bytes]:
        """Every stored file's value as JSON bytes (a row, or a job with segments: a list of
        rows), in file order, read in batches."""
        key = self.rows_key(job_id)
        for start in range(0, total, READ_BATCH):
            fields = [str(i) for i in range(start, min(total, start + READ_BATCH))]
            for raw in self.client.hmget(key, fields):
                if raw is not None:
                    yield raw if isinstance(raw, bytes) else raw.encode()

    def iter_raw(self, job_id: str, total: int) -> Iterator[bytes]:
        """Every stored row as JSON bytes, in file order (a job with segments: each file's
        rows in time order)."""
        for raw in self.iter_files(job_id, total):
            if raw[:1] == b"[":
                for row in json.loads(raw):
                    yield json.dumps(row, separators=(",", ":")).encode()
            else:
                yield raw

    def all_rows(self, job_id: str, total: int) -> list[dict]:
        return [json.loads(r) for r in self.iter_raw(job_id, total)]


def _rows(value) -> list[dict]:
    return value if isinstance(value, list) else [value]


def summarize_segments(files: list[list[dict]], classes: list[str] | None = None) -> dict:
    """Counts of a finished job with segments (one list of rows per file): COUNT, SUCCEEDED
    and FAILED files, SEGMENTS, SPEECH_SECONDS and SUMMARY {emotion: {SECONDS, SHARE,
    SEGMENTS}} over every file's speech, every class of ``classes`` listed (0 when absent):
    ser.speech_time, the rule a recording's own SUMMARY follows."""
    failed = sum(1 for rows in files if any("ERROR" in row for row in rows))
    speech, summary = speech_time.emotion_time(
        (row for rows in files for row in rows), classes or []
    )
    return {
        "COUNT": len(files),
        "SUCCEEDED": len(files) - failed,
        "FAILED": failed,
        "SEGMENTS": sum(v["SEGMENTS"] for v in summary.values()),
        "SPEECH_SECONDS": round(speech, 2),
        "SUMMARY": summary,
    }


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


def _flag(value) -> str:
    return "" if value is None else ("true" if value else "false")


def _blank(value) -> object:
    return "" if value is None else value


def stream_csv(
    raw_rows: Iterator[bytes], segments: bool = False, classes: list[str] | None = None
) -> Iterator[str]:
    """CSV with a header (errors as ERROR_CODE, ERROR_MESSAGE; SPEAKER and ADAPTED empty for
    a job without speakers), in blocks of about 64 KB. ``segments``: a row per segment with
    START and END, then a probability column per class of ``classes`` (P_<class>)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    classes = list(classes or [])
    writer.writerow(
        [*SEGMENT_CSV_COLUMNS, *(f"P_{_cell(c)}" for c in classes)] if segments else CSV_COLUMNS
    )
    for raw in raw_rows:
        row = json.loads(raw)
        err = row.get("ERROR") or {}
        if segments:
            probs = row.get("PROBABILITIES") or {}
            writer.writerow(
                (
                    _cell(row.get("FILENAME", "")),
                    _blank(row.get("START")),
                    _blank(row.get("END")),
                    _blank(row.get("EMOTION")),
                    _blank(row.get("PROBABILITY")),
                    err.get("CODE", ""),
                    _cell(err.get("MESSAGE", "")),
                    _flag(row.get("ADAPTED")),
                    *(_blank(probs.get(c)) for c in classes),
                )
            )
        else:
            writer.writerow(
                (
                    _cell(row.get("FILENAME", "")),
                    row.get("EMOTION", ""),
                    row.get("PROBABILITY", ""),
                    err.get("CODE", ""),
                    _cell(err.get("MESSAGE", "")),
                    _cell(row.get("SPEAKER") or ""),
                    _flag(row.get("ADAPTED")),
                )
            )
        if out.tell() >= 65536:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
