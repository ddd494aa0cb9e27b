"""Paging a score job's rows (GET /jobs/<id>/results, ser.service.results) on a real Redis:
with segments, OFFSET and LIMIT count segment rows, not files, and no row is lost or repeated
across pages, while the job runs and once every file is done."""

from __future__ import annotations

import json
import uuid

import pytest

from ser.service import jobs as J
from ser.service.results import ResultStore
from tests.harness import drop_prefix, make_client

# rows per file: 3 segments, a failed file (one row), 5 segments, a file without speech (one
# row), 2 segments, 7 segments
SHAPES = [3, "error", 5, "hum", 2, 7]


def _file_rows(i: int, shape) -> list[dict]:
    name = f"calls/f{i}.wav"
    if shape == "error":
        return [{"FILENAME": name, "ERROR": {"CODE": "AUDIO_SILENT", "MESSAGE": "silent"}}]
    if shape == "hum":
        return [{"FILENAME": name, "EMOTION": None, "PROBABILITY": None}]
    return [
        {
            "FILENAME": name,
            "START": float(k),
            "END": k + 0.5,
            "EMOTION": "calm",
            "PROBABILITY": 0.9,
            "PROBABILITIES": {"calm": 0.9, "tense": 0.1},
            "ADAPTED": False,
        }
        for k in range(shape)
    ]


FILES = [_file_rows(i, shape) for i, shape in enumerate(SHAPES)]
ALL_ROWS = [row for rows in FILES for row in rows]


@pytest.fixture
def job(redis_client, service_env):
    """(job id, ResultStore, Flask test client) of a RUNNING score job with segments."""
    prefix = f"page{uuid.uuid4().hex[:8]}:"
    jobs = J.JobStore(redis_client, prefix, ttl=600)
    results = ResultStore(redis_client, prefix, ttl=600)
    params = {"folder": "calls", "segments": True}
    job_id = jobs.create("score", params, total=len(FILES))["id"]
    assert jobs.start(job_id, 600) is not None
    client = make_client(service_env, SER_KEY_PREFIX=prefix, SER_API_KEY="")
    try:
        yield job_id, results, client
    finally:
        drop_prefix(redis_client, prefix)


def _follow(client, job_id: str, limit: int) -> tuple[list[dict], list[dict]]:
    """Every page from offset 0 following NEXT: (their rows joined, the pages)."""
    rows, pages = [], []
    url = f"/jobs/{job_id}/results?offset=0&limit={limit}"
    while url:
        resp = client.get(url)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        page = resp.get_json()
        assert len(page["ROWS"]) <= limit and page["LIMIT"] == limit
        pages.append(page)
        rows += page["ROWS"]
        url = page["NEXT"]
        assert len(pages) <= len(ALL_ROWS) + 1, "NEXT never ends"
    return rows, pages


def test_pages_count_segment_rows_and_hold_every_row_once(job):
    job_id, results, client = job
    # chunks finish out of order, one file's rows are stored twice (a redelivered chunk)
    for batch in ({4: FILES[4], 5: FILES[5]}, {0: FILES[0], 1: FILES[1]}, {2: FILES[2]}):
        results.record_at(job_id, batch, deadline_ts=0)
    results.record_at(job_id, {2: FILES[2], 3: FILES[3]}, deadline_ts=0)
    for limit in (1, 2, 3, 4, 5, 7, 19, 100):
        rows, pages = _follow(client, job_id, limit)
        assert rows == ALL_ROWS, limit
        assert all(len(p["ROWS"]) == limit for p in pages[:-1])  # full pages but the last
        assert [p["OFFSET"] for p in pages] == [limit * k for k in range(len(pages))]
        assert all(p["COUNT"] == len(FILES) and p["ROW_COUNT"] == len(ALL_ROWS) for p in pages)
    # a page starting inside a file, and one past the end
    page = client.get(f"/jobs/{job_id}/results?offset=5&limit=3").get_json()
    assert (
        page["ROWS"] == ALL_ROWS[5:8] and page["NEXT"] == f"/jobs/{job_id}/results?offset=8&limit=3"
    )
    last = client.get(f"/jobs/{job_id}/results?offset={len(ALL_ROWS)}&limit=3").get_json()
    assert last["ROWS"] == [] and last["NEXT"] is None
    # the failed file and the file without speech are one row each
    failed = [r for r in ALL_ROWS if "ERROR" in r]
    assert client.get(f"/jobs/{job_id}/results?offset=3&limit=1").get_json()["ROWS"] == failed
    # the exports hold the same rows
    jsonl = client.get(f"/jobs/{job_id}/results?format=jsonl").get_data(as_text=True)
    assert [json.loads(line) for line in jsonl.splitlines()] == ALL_ROWS


def test_while_the_job_runs_rows_keep_their_positions(job):
    job_id, results, client = job
    results.record_at(job_id, {0: FILES[0], 1: FILES[1], 3: FILES[3]}, deadline_ts=0)
    # file 2 is not done: the rows end before it (file 3's row would take its rows' place)
    early, pages = _follow(client, job_id, 3)
    assert early == FILES[0] + FILES[1] and pages[-1]["NEXT"] is None
    assert pages[-1]["ROW_COUNT"] == 5 and pages[-1]["DONE"] == 3
    results.record_at(job_id, {2: FILES[2], 4: FILES[4], 5: FILES[5]}, deadline_ts=0)
    # asked again from where the rows ended: the rest, none lost or repeated
    rest, url = [], f"/jobs/{job_id}/results?offset={len(early)}&limit=3"
    while url:
        page = client.get(url).get_json()
        rest += page["ROWS"]
        url = page["NEXT"]
    assert early + rest == ALL_ROWS


def test_rows_stored_before_their_counts_page_alike(job, redis_client):
    """A job whose rows were stored without row counts (an older version) pages the same."""
    job_id, results, client = job
    results.record_at(job_id, dict(enumerate(FILES)), deadline_ts=0)
    redis_client.delete(results.counts_key(job_id))
    rows, pages = _follow(client, job_id, 4)
    assert rows == ALL_ROWS and all(len(p["ROWS"]) == 4 for p in pages[:-1])
    assert "ROW_COUNT" not in pages[0]


def test_a_job_without_segments_still_pages_by_file(redis_client, service_env):
    prefix = f"page{uuid.uuid4().hex[:8]}:"
    jobs = J.JobStore(redis_client, prefix, ttl=600)
    results = ResultStore(redis_client, prefix, ttl=600)
    job_id = jobs.create("score", {"folder": "calls"}, total=5)["id"]
    assert jobs.start(job_id, 600) is not None
    rows = [{"FILENAME": f"calls/{i}.wav", "EMOTION": "calm", "PROBABILITY": 0.8} for i in range(5)]
    results.record(job_id, 0, rows[:2], deadline_ts=0)
    results.record(job_id, 3, rows[3:], deadline_ts=0)
    client = make_client(service_env, SER_KEY_PREFIX=prefix, SER_API_KEY="")
    try:
        page = client.get(f"/jobs/{job_id}/results?offset=1&limit=3").get_json()
        # files 1..3, file 2 not done yet left out; the next page starts at file 4
        assert page["ROWS"] == [rows[1], rows[3]] and page["ROW_COUNT"] == 4
        assert page["NEXT"] == f"/jobs/{job_id}/results?offset=4&limit=3"
        assert not redis_client.exists(results.counts_key(job_id))
    finally:
        drop_prefix(redis_client, prefix)
