"""The web console in Debian's Chromium against a real `ser up` stack with an API key: the key
dialog (console and /docs), a clip's emotion and chart, a recording's emotion over time, a
microphone recording, a training followed to its end, a running job cancelled, a folder scored
(its rows sorted, filtered and paged, its CSV downloaded), an older model activated and a newer
one deleted (asked in the page, never window.confirm), a model's page (and one trained before
its figures were kept), two versions side by side, a speaker looked up and forgotten (and ids
it cannot find), /docs. Every view is screenshotted into .ser/screenshots/. Waits are
conditions (Playwright's expect), never sleeps."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid

import numpy as np
import pytest

from tests import audiogen
from tests.audiogen import CLASSES
from tests.browser.conftest import shot
from tests.fixtures import API_KEY


def expect(locator):
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def assert_fits(page) -> None:
    """Nothing wider than the viewport (wide tables scroll inside their own box)."""
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths


NO_PROMPT = "window.prompts = 0; window.prompt = () => { window.prompts += 1; return null; };"
NO_CONFIRM = "window.confirms = 0; window.confirm = () => { window.confirms += 1; return false; };"


def confirm_in_page(page, opener, title: str, yes: str, subject: str, screenshot: str, kept):
    """The in-page confirmation ``opener`` opens: an alert dialog ``title`` naming ``subject``
    with "Keep it" focused; Escape closes it, the focus back on ``opener``, and ``kept()`` holds;
    Enter on the opener opens it again, and its ``yes`` button confirms."""
    opener.click()
    dialog = page.get_by_role("alertdialog", name=title)
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(subject)
    expect(dialog.get_by_role("button", name="Keep it")).to_be_focused()
    shot(page, screenshot)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()
    assert kept()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=yes).click()
    expect(dialog).to_be_hidden()


def test_the_page_asks_for_the_key_once_and_keeps_it_for_the_tab(fresh_page, console_stack):
    page = fresh_page
    page.add_init_script(NO_PROMPT)
    page.goto(console_stack.base + "/#models")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("textbox", name="API key")).to_be_focused()
    expect(page.locator("#health")).to_contain_text("OK")  # the probes need no key
    shot(page, "key-prompt")
    page.get_by_role("textbox", name="API key").fill("wrong-key")
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#key-error")).to_contain_text("refused")
    page.get_by_role("textbox", name="API key").fill(API_KEY)
    page.get_by_role("button", name="Use this key").click()
    expect(dialog).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('ser-api-key')") == API_KEY
    page.reload()  # same tab: no second prompt
    expect(page.locator("#models-table caption")).to_be_visible()
    expect(dialog).to_be_hidden()
    assert page.evaluate("window.prompts") == 0  # an in-page dialog, never window.prompt


def test_the_docs_page_asks_for_the_key_in_a_dialog_used_from_the_keyboard(
    fresh_page, console_stack
):
    page = fresh_page
    page.add_init_script(NO_PROMPT)
    page.goto(console_stack.base + "/docs")
    dialog = page.get_by_role("dialog", name="API key")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("textbox", name="API key")).to_be_focused()
    shot(page, "docs-key")
    page.keyboard.type("wrong-key")
    page.keyboard.press("Enter")
    expect(page.locator("#key-error")).to_contain_text("refused")
    page.keyboard.type(API_KEY)
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator(".opblock-summary-path", has_text="/predict").first).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('ser-api-key')") == API_KEY
    assert page.evaluate("window.prompts") == 0


def test_a_dropped_clip_shows_its_emotion_and_chart(page, console_stack, console_trained, data_dir):
    page.goto(console_stack.base + "/")
    expect(page.locator("#ready")).to_contain_text("yes")
    page.get_by_label("Audio files (WAV, FLAC, OGG)", exact=False).set_input_files(
        str(data_dir / "clips" / "tense.wav")
    )
    page.get_by_label("Speaker (optional)").fill("spk1")
    page.get_by_role("button", name="Predict").click()
    clip = page.locator("#clips li").first
    expect(clip.locator(".emotion")).to_contain_text("tense")
    expect(clip.locator(".bar")).to_have_count(len(CLASSES))
    expect(clip.locator(".meta")).to_contain_text(console_trained["MODEL_VERSION"][:6])
    expect(clip.locator(".meta")).to_contain_text(" s")
    shot(page, "try")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    shot(page, "try-phone")


def queued_job(page) -> str:
    """The id of the job the Train or Score form just queued (once the page says so)."""
    message = page.locator("#run-message")
    expect(message).to_contain_text("queued")
    return message.inner_text().split()[1]


SEEN_PROGRESS = """() => {
  window.seenProgress = [];
  new MutationObserver(() => document.querySelectorAll("#jobs-table progress").forEach(
    (p) => window.seenProgress.push([p.value, p.max]))).observe(
    document.querySelector("#jobs-table tbody"), {childList: true, subtree: true});
}"""


def test_a_recording_from_the_microphone_is_predicted(page, console_stack, console_trained):
    page.context.grant_permissions(["microphone"], origin=console_stack.base)
    page.goto(console_stack.base + "/")
    page.get_by_role("button", name="Record from the microphone").click()
    expect(page.get_by_role("button", name="Stop recording")).to_be_visible()
    # Chromium's fake microphone (a beep) until the page has recorded 2 s of it
    expect(page.locator("#rec-status")).to_have_text(re.compile(r"recording ([2-9]|\d\d+)\.\d s"))
    page.get_by_role("button", name="Stop recording").click()
    clip = page.locator("#clips li").first
    expect(clip.locator("strong")).to_contain_text("recording-")
    expect(clip.locator(".emotion")).to_contain_text("%")
    expect(clip.locator(".bar")).to_have_count(len(CLASSES))
    shot(page, "try-recording")


def test_a_training_is_followed_to_its_end(page, console_stack, console_api, console_trained):
    page.goto(console_stack.base + "/#run")
    page.evaluate(SEEN_PROGRESS)  # every progress bar the jobs table shows, as it shows it
    page.get_by_label("Dataset (directory under the data root)").fill("ds_emodb")  # uncached
    page.get_by_label("Features").select_option("seed")
    page.get_by_label("Stratified CV repetitions", exact=False).fill("2")
    page.get_by_label("Make it current").uncheck()
    shot(page, "train-and-score")
    page.get_by_role("button", name="Train").click()
    expect(page.locator("#view-jobs")).to_be_visible()
    job_id = queued_job(page)
    row = page.locator(f'#jobs-table tr[data-job="{job_id}"]')
    expect(row.locator("progress")).to_be_visible()  # queued or running: a progress bar
    shot(page, "jobs-running")
    expect(row).to_have_attribute("data-status", "SUCCEEDED")
    expect(row.locator("td").nth(4)).to_have_text("done")
    assert page.evaluate("window.seenProgress.length") > 0
    assert console_api.get(f"/jobs/{job_id}").json()["REPEATS"] == 2
    shot(page, "jobs")


def test_a_running_job_is_cancelled(page, console_stack, console_trained):
    page.goto(console_stack.base + "/#run")
    page.get_by_label("Folder (directory under the data root)").fill("ds_cancel")
    page.get_by_role("button", name="Score").click()
    job_id = queued_job(page)
    row = page.locator(f'#jobs-table tr[data-job="{job_id}"]')
    row.get_by_role("button", name="Cancel").click()
    expect(row).to_have_attribute("data-status", "CANCELLED")


def test_a_scored_folder_downloads_as_csv(page, console_stack, console_trained):
    page.goto(console_stack.base + "/#run")
    page.get_by_label("Folder (directory under the data root)").fill("ds")
    page.get_by_label("Evaluate against labels").check()
    page.get_by_role("button", name="Score").click()
    job_id = queued_job(page)
    row = page.locator(f'#jobs-table tr[data-job="{job_id}"]')
    expect(row).to_have_attribute("data-status", "SUCCEEDED")
    row.get_by_role("button", name="Details").click()
    expect(page.locator("#rows-table tbody tr")).to_have_count(8 * len(CLASSES))
    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    text = open(info.value.path(), encoding="utf-8").read()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 8 * len(CLASSES), text[:500]
    assert {r["EMOTION"] for r in rows} <= set(CLASSES), rows[:3]
    shot(page, "score-job")


def test_an_older_model_is_activated(page, console_stack, console_api, console_trained):
    newer = console_api.train("ds", timeout=240, features="seed")  # current now
    older = console_trained["MODEL_VERSION"]
    assert newer["MODEL_VERSION"] != older
    page.add_init_script(NO_CONFIRM)
    page.goto(console_stack.base + "/#models")
    old_row = page.locator(f'#models-table tr[data-version="{older}"]')
    expect(
        page.locator(f'#models-table tr[data-version="{newer["MODEL_VERSION"]}"]')
    ).to_have_attribute("data-current", "true")
    old_row.get_by_role("button", name="Activate").click()
    expect(old_row).to_have_attribute("data-current", "true")
    expect(page.locator("#models-message")).to_contain_text("now current")
    assert console_api.get("/models").json()["CURRENT"] == older
    shot(page, "models")
    # deleting asks first, in the page: Escape keeps the model, the focus back on the button
    version = newer["MODEL_VERSION"]
    delete = page.locator(f'#models-table tr[data-version="{version}"]').get_by_role(
        "button", name="Delete"
    )
    confirm_in_page(
        page,
        delete,
        "Delete this model?",
        f"Delete {version}",
        version,
        "models-confirm",
        kept=lambda: console_api.get(f"/models/{version}").status_code == 200,
    )
    expect(page.locator("#models-message")).to_contain_text("deleted")
    expect(page.locator(f'#models-table tr[data-version="{version}"]')).to_have_count(0)
    assert console_api.get(f"/models/{version}").status_code == 404
    assert page.evaluate("window.confirms") == 0  # an in-page confirmation, not window.confirm


def test_the_api_documentation_renders_the_live_document(page, console_stack):
    page.goto(console_stack.base + "/docs")
    expect(page.get_by_text("Speech emotion recognition service").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/predict").first).to_be_visible()
    shot(page, "docs")


# -- a score job's rows -------------------------------------------------------------------------
def _cells(page, column: int) -> list[str]:
    return page.locator(f"#rows-table tbody tr td:nth-child({column})").all_inner_texts()


def test_a_score_jobs_rows_sort_filter_and_page(page, console_stack, console_api, console_trained):
    job = console_api.post("/score", json={"folder": "ds"}).json()
    done = console_api.wait_job(job["JOB_ID"], timeout=180)
    assert done["JOB_STATUS"] == "SUCCEEDED", done
    page.goto(console_stack.base + "/#jobs")
    page.locator(f'#jobs-table tr[data-job="{job["JOB_ID"]}"]').get_by_role(
        "button", name="Details"
    ).click()
    rows = page.locator("#rows-table tbody tr")
    expect(rows).to_have_count(8 * len(CLASSES))
    # the per-emotion summary: the job's counts, as files and shares
    summary = page.locator("#score-summary tbody tr")
    expect(summary).to_have_count(len(done["SUMMARY"]))
    for emotion, n in done["SUMMARY"].items():
        expect(page.locator(f'#score-summary tr[data-emotion="{emotion}"] td').first).to_have_text(
            str(n)
        )
    expect(page.get_by_role("button", name="Download JSONL")).to_be_visible()

    header = page.locator('#rows-table th[data-key="PROBABILITY"]')
    header.get_by_role("button").click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    probs = [float(v) for v in _cells(page, 3)]  # File, Emotion, Probability, Error
    assert probs == sorted(probs)
    header.get_by_role("button").press("Enter")  # the keyboard sorts too: descending
    expect(header).to_have_attribute("aria-sort", "descending")
    probs = [float(v) for v in _cells(page, 3)]
    assert probs == sorted(probs, reverse=True)
    page.locator('#rows-table th[data-key="FILENAME"]').get_by_role("button").click()
    files = _cells(page, 1)
    assert files == sorted(files)

    page.get_by_label("Filter rows").fill("calm_00")
    expect(rows).to_have_count(8)
    assert all("calm_00" in f for f in _cells(page, 1))
    page.get_by_label("Filter rows").fill("")
    page.get_by_label("Emotion", exact=True).select_option("tense")
    expect(rows).to_have_count(done["SUMMARY"].get("tense", 0))
    assert set(_cells(page, 2)) <= {"tense"}
    page.get_by_label("Emotion", exact=True).select_option("")

    page.get_by_label("Rows per page").select_option("10")  # 24 rows: pages of 10
    expect(rows).to_have_count(10)
    expect(page.locator("#rows-count")).to_contain_text("page 1 of 3")
    first = _cells(page, 1)
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#rows-count")).to_contain_text("Rows 11–20 of 24")
    assert not set(_cells(page, 1)) & set(first)
    page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(4)
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    shot(page, "score-rows")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download JSONL").click()
    lines = open(info.value.path(), encoding="utf-8").read().splitlines()
    assert len(lines) == 8 * len(CLASSES) and all(json.loads(x)["FILENAME"] for x in lines)


# -- emotion over time ----------------------------------------------------------------------------
PARTS = [(None, 1.0), ("calm", 3.0), (None, 1.0), ("tense", 4.0), (None, 1.0)]


def test_a_recording_shows_its_emotion_over_time(page, console_stack, console_trained, tmp_path):
    parts = [
        audiogen.noise(s, amp=1e-4, seed=i) if label is None else audiogen.voice_like(label, s)
        for i, (label, s) in enumerate(PARTS)
    ]
    path = audiogen.write(tmp_path / "talk.wav", np.concatenate(parts))  # speech and pauses
    page.goto(console_stack.base + "/")
    page.get_by_label("Audio files (WAV, FLAC, OGG)", exact=False).set_input_files(str(path))
    page.get_by_label("Emotion over time").check()
    page.get_by_role("button", name="Predict").click()
    clip = page.locator("#clips li").first
    segments = clip.locator(".timeline .seg")
    expect(segments.first).to_be_visible()
    expect(clip.locator(".timeline figcaption")).to_contain_text("of speech in 10.0 s")
    count = segments.count()
    assert count >= 2
    # the pauses stay blank: the first segment starts after 1 s of silence, the last ends
    # before the last second
    first_start = float(segments.first.get_attribute("aria-label").split()[0])
    assert first_start == pytest.approx(1.0, abs=0.15)
    expect(clip.locator(".timeline .legend li")).not_to_have_count(0)
    tip = clip.locator(".timeline .tip")
    segments.first.hover()  # hover: the segment's probabilities
    expect(tip).to_be_visible()
    expect(tip.locator(".bar")).to_have_count(len(CLASSES))
    shot(page, "timeline")
    segments.first.focus()  # the keyboard: focus shows them too, arrows move along
    expect(tip).to_contain_text(segments.first.get_attribute("aria-label").split()[0])
    page.keyboard.press("ArrowRight")
    expect(segments.nth(1)).to_be_focused()
    expect(tip).to_contain_text(segments.nth(1).get_attribute("aria-label").split()[0])
    page.keyboard.press("End")
    expect(segments.nth(count - 1)).to_be_focused()
    expect(tip).to_be_visible()
    page.set_viewport_size({"width": 390, "height": 844})
    expect(tip).to_be_hidden()  # placed for the old width: a resize hides it
    assert_fits(page)
    shot(page, "timeline-phone")


def test_a_speaker_and_emotion_over_time_are_not_sent_together(page, console_stack, data_dir):
    page.goto(console_stack.base + "/")
    page.get_by_label("Audio files (WAV, FLAC, OGG)", exact=False).set_input_files(
        str(data_dir / "clips" / "calm.wav")
    )
    page.get_by_label("Speaker (optional)").fill("spk1")
    page.get_by_label("Emotion over time").check()
    page.get_by_role("button", name="Predict").click()
    expect(page.locator("#try-message")).to_contain_text("no speaker")
    expect(page.locator("#clips li")).to_have_count(0)


# -- a model's page, and two side by side --------------------------------------------------------
@pytest.fixture(scope="module")
def console_second(console_api, console_trained) -> dict:
    """Another version, speaker protocol first, kept aside (the current one stays)."""
    return console_api.train("ds", timeout=240, features="seed", protocol="speaker", activate=False)


def _shares(table) -> list[float]:
    return [float(v) for v in table.locator("tbody td[data-share]").evaluate_all(
        "cells => cells.map((c) => c.dataset.share)")]  # fmt: skip


def test_a_model_page_shows_its_figures(page, console_stack, console_api, console_trained):
    version = console_trained["MODEL_VERSION"]
    n = console_trained["N_SAMPLES"]
    page.goto(console_stack.base + "/#models")
    page.get_by_role("link", name=f"details of {version}").click()
    expect(page.locator("#model-title")).to_contain_text(f"Model {version}")
    model = page.locator(f'#model-page article[data-version="{version}"]')
    expect(model.locator(".metrics tr[data-metric='ECE'] td")).to_have_count(2)  # 2 protocols
    expect(model.locator(".metrics tr[data-metric='UAR'] td").first).not_to_have_text("–")
    for protocol in ("stratified", "speaker"):
        section = model.locator(f'section[data-protocol="{protocol}"]')
        counts, shares = section.locator("table.confusion").all()
        cells = counts.locator("tbody td[data-share]").all_inner_texts()
        assert sum(int(c) for c in cells) == n
        by_row = np.array(_shares(shares)).reshape(len(CLASSES), len(CLASSES))
        assert np.allclose(by_row.sum(axis=1), 1.0, atol=1e-3)  # row-normalised
        expect(section.locator("table.per-class tbody tr")).to_have_count(len(CLASSES))
        expect(section.locator("table.speakers tbody tr")).to_have_count(4)
        expect(section.locator("table.folds tbody tr")).not_to_have_count(0)
        expect(section.locator("svg.reliability rect.bin")).not_to_have_count(0)
        expect(section.locator(".reliability-figure figcaption")).to_contain_text("ECE")
    shot(page, "model")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits(page)
    shot(page, "model-phone")


def test_a_model_trained_before_the_figures_were_kept_degrades(
    page, console_stack, console_trained
):
    version = console_trained["MODEL_VERSION"]

    def as_before(route):  # GET /models/<v> as a version (and service) before them answer
        body = route.fetch().json()
        body.pop("EVALUATIONS")
        for key in ("reliability", "per_speaker", "protocols"):
            body["METRICS"].pop(key, None)
        route.fulfill(json=body)

    page.route(f"**/models/{version}", as_before)
    page.goto(console_stack.base + f"/#model/{version}")
    model = page.locator(f'#model-page article[data-version="{version}"]')
    expect(model.locator("table.confusion")).to_have_count(2)  # its own protocol's matrix
    expect(model.locator("table.per-class tbody tr")).to_have_count(len(CLASSES))
    expect(model.locator(".missing", has_text="Reliability diagram")).to_contain_text(
        "not recorded"
    )
    expect(model.locator(".missing", has_text="F1 per speaker")).to_be_visible()
    expect(model.locator("svg.reliability")).to_have_count(0)
    shot(page, "model-before-figures")


def test_two_versions_side_by_side(page, console_stack, console_trained, console_second):
    a, b = console_trained["MODEL_VERSION"], console_second["MODEL_VERSION"]
    page.goto(console_stack.base + "/#models")
    page.get_by_role("link", name="Compare two versions side by side").click()
    expect(page).to_have_url(re.compile(r"#compare/v\d+/v\d+$"))  # the newest two, at first
    expect(page.locator("#compare-metrics")).to_be_visible()
    page.get_by_label("First version").select_option(a)
    page.get_by_label("Second version").select_option(b)
    page.get_by_role("button", name="Compare").click()
    expect(page).to_have_url(re.compile(f"#compare/{a}/{b}$"))
    table = page.locator("#compare-metrics")
    expect(table.locator("thead th")).to_have_text(["Figure", a, b, f"{b} − {a}"])
    f1 = table.locator('tr[data-metric="F1-macro (stratified)"] td')
    expect(f1.nth(0)).to_contain_text(f"{console_trained['F1_MACRO_MEAN']:.3f}")
    expect(table.locator('tr[data-metric="F1-macro (speaker)"] td').nth(1)).to_contain_text(
        f"{console_second['F1_MACRO_MEAN']:.3f}"
    )
    classes = page.locator('table.compare-classes[data-protocol="speaker"] tbody tr')
    expect(classes).to_have_count(len(CLASSES))
    pages = page.locator(".side-by-side article.model")
    expect(pages).to_have_count(2)
    expect(pages.nth(0)).to_have_attribute("data-version", a)
    expect(pages.nth(1)).to_have_attribute("data-version", b)
    # the two pages line up: the same protocols in the same order
    order = [
        p.locator("section.protocol").evaluate_all("s => s.map((x) => x.dataset.protocol)")
        for p in pages.all()
    ]
    assert order[0] == order[1] == ["stratified", "speaker"]
    shot(page, "compare")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits(page)
    shot(page, "compare-phone")


def test_a_folder_of_recordings_is_scored_segment_by_segment(
    page, console_stack, console_trained, data_dir
):
    for i, name in enumerate(("a.wav", "b.wav")):
        parts = [
            audiogen.noise(s, amp=1e-4, seed=i * 10 + k)
            if label is None
            else audiogen.voice_like(label, s, seed=i * 10 + k)
            for k, (label, s) in enumerate(PARTS)
        ]
        audiogen.write(data_dir / "talks" / name, np.concatenate(parts))
    page.goto(console_stack.base + "/#run")
    page.get_by_label("Folder (directory under the data root)").fill("talks")
    page.get_by_label("Evaluate against labels").check()
    page.get_by_label("A row per speech segment", exact=False).check()
    expect(page.get_by_label("Evaluate against labels")).to_be_disabled()  # not with segments
    expect(page.get_by_label("Evaluate against labels")).not_to_be_checked()
    page.get_by_role("button", name="Score").click()
    job_id = queued_job(page)
    row = page.locator(f'#jobs-table tr[data-job="{job_id}"]')
    expect(row).to_have_attribute("data-status", "SUCCEEDED")
    row.get_by_role("button", name="Details").click()
    rows = page.locator("#rows-table tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 4  # two recordings, two speech stretches each at least
    headers = page.locator("#rows-table thead th").all_inner_texts()
    assert any("Start" in h for h in headers) and any("End" in h for h in headers), headers
    files = set(_cells(page, 1))
    assert {f.rsplit("/", 1)[-1] for f in files} == {"a.wav", "b.wav"}, files
    shot(page, "score-segments")


# -- speakers ------------------------------------------------------------------------------------


def test_a_speaker_is_looked_up_and_forgotten(
    page, console_stack, console_api, console_trained, tmp_path
):
    speaker = f"console-{uuid.uuid4().hex[:8]}"  # its own: other tests name speakers too
    path = audiogen.write(tmp_path / "voice.wav", audiogen.voice_like("calm", 2.0, seed=7))
    page.add_init_script(NO_CONFIRM)
    page.goto(console_stack.base + "/")
    expect(page.locator("#ready")).to_contain_text("yes")
    page.get_by_label("Audio files (WAV, FLAC, OGG)", exact=False).set_input_files(str(path))
    page.get_by_label("Speaker (optional)").fill(speaker)
    page.get_by_role("button", name="Predict").click()
    clip = page.locator("#clips li").first
    expect(clip.locator(".emotion")).to_contain_text("%")
    line = clip.locator(".speaker-line")
    expect(line).to_contain_text("ADAPTED: no")  # its first clip: never adapted
    expect(line.locator(".adapted")).to_have_attribute("data-adapted", "false")

    # the clip's speaker, on the Speakers view: 1 clip under the current model's feature spec
    line.get_by_role("link", name=f"speaker {speaker} on the Speakers view").click()
    expect(page).to_have_url(re.compile(f"#speakers/{speaker}$"))
    expect(page.locator("#view-speakers")).to_be_visible()
    expect(page.locator('nav a[href="#speakers"]')).to_have_attribute("aria-current", "page")
    expect(page.get_by_label("Speaker id")).to_have_value(speaker)
    card = page.locator(f'#speaker-out article[data-speaker="{speaker}"]')
    expect(card.locator("#speaker-total")).to_have_text("1 clip in all")
    spec = console_api.get("/models/" + console_trained["MODEL_VERSION"]).json()["FEATURE_SPEC"]
    expect(card.locator(f'#speaker-clips tr[data-spec="{spec}"] td.clips')).to_have_text("1")
    assert console_api.get(f"/speakers/{speaker}").json()["CLIPS"] == {spec: 1}
    expect(card.locator("#speaker-adapt")).to_have_attribute(
        "data-verdict", re.compile("no|not yet")
    )
    expect(page.locator("#speakers-about")).to_contain_text("5 clips or more")
    shot(page, "speakers")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    assert_fits(page)
    shot(page, "speakers-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    # forgetting asks first, in the page: Escape keeps the speaker, the focus back on the button
    forget = page.get_by_role("button", name="Forget this speaker")
    confirm_in_page(
        page,
        forget,
        "Forget this speaker?",
        f"Forget {speaker}",
        speaker,
        "speakers-confirm",
        kept=lambda: console_api.get(f"/speakers/{speaker}").status_code == 200,
    )
    expect(page.locator("#speaker-gone")).to_contain_text("are gone")
    expect(page.locator("#speaker-message")).to_contain_text("forgotten")
    assert console_api.get(f"/speakers/{speaker}").status_code == 404
    assert page.evaluate("window.confirms") == 0  # an in-page confirmation, not window.confirm
    shot(page, "speakers-forgotten")

    # looked up again: it is unknown now
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("#speaker-message")).to_contain_text(
        f'No statistics for speaker "{speaker}"'
    )
    expect(page.locator("#speaker-out article")).to_have_count(0)


def test_an_invalid_or_unknown_speaker_id_says_so(page, console_stack):
    page.goto(console_stack.base + "/#speakers")
    field = page.get_by_label("Speaker id")
    message = page.locator("#speaker-message")
    field.fill("x" * 129)  # the API answers 400 INVALID_SPEAKER
    field.press("Enter")
    expect(message).to_contain_text("Not a valid speaker id")
    expect(message).to_contain_text("INVALID_SPEAKER")
    expect(message).to_contain_text("128")
    shot(page, "speakers-invalid")
    page.set_viewport_size({"width": 390, "height": 844})  # the long id wraps at phone width
    assert_fits(page)
    page.set_viewport_size({"width": 1280, "height": 800})
    field.fill("a/b")  # not even a URL path segment: said without asking the API
    field.press("Enter")
    expect(message).to_contain_text('no "/"')
    field.fill("nobody-ever-predicted")  # valid, unknown: 404 SPEAKER_NOT_FOUND
    page.get_by_role("button", name="Look up").click()
    expect(message).to_contain_text('No statistics for speaker "nobody-ever-predicted"')
    expect(page).to_have_url(re.compile("#speakers/nobody-ever-predicted$"))
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits(page)


def test_the_speakers_view_says_when_an_adapting_model_would_use_the_statistics(
    page, console_stack
):
    """The verdict against an adapting current model: GET /models and GET /speakers/<id>
    answered in the page (the generated dataset's models keep adaptation off)."""
    model = {"MODEL_VERSION": "v9", "CURRENT": True, "FEATURE_SPEC": "spec-a", "ADAPT": "auto"}
    model["ADAPT_CHOSEN"] = "speaker"
    page.route("**/models", lambda route: route.fulfill(json={"MODELS": [model], "CURRENT": "v9"}))
    held = {"anna": {"spec-a": 4, "spec-b": 9}, "ben": {"spec-a": 2}, "cleo": {"spec-b": 7}}

    def speaker(route):
        name = route.request.url.rsplit("/", 1)[1]
        route.fulfill(json={"SPEAKER": name, "CLIPS": held[name]})

    page.route("**/speakers/*", speaker)
    verdict = page.locator("#speaker-adapt")
    page.goto(console_stack.base + "/#speakers/anna")  # 4 stored + the next clip: 5
    expect(verdict).to_have_attribute("data-verdict", "yes")
    expect(verdict).to_contain_text("v9 (adaptation speaker)")
    expect(page.locator("#speaker-total")).to_have_text("13 clips in all")
    expect(page.locator('#speaker-clips tr[data-spec="spec-a"] td').nth(1)).to_contain_text("v9")
    shot(page, "speakers-adapting")
    page.get_by_label("Speaker id").fill("ben")
    page.get_by_label("Speaker id").press("Enter")
    expect(verdict).to_have_attribute("data-verdict", "not yet")
    expect(verdict).to_contain_text("2 more predictions")
    page.goto(console_stack.base + "/#speakers/cleo")  # its clips under another spec only
    expect(verdict).to_have_attribute("data-verdict", "not yet")
    expect(verdict).to_contain_text("4 more predictions")


def test_a_folder_is_scored_with_its_speakers_from_a_pattern(
    page, console_stack, console_api, console_trained
):
    page.goto(console_stack.base + "/#run")
    page.get_by_label("Folder (directory under the data root)").fill("ds")
    pattern = page.get_by_label("Regular expression with a group named speaker")
    expect(pattern).to_be_hidden()
    page.get_by_label("Speakers (each file's speaker", exact=False).select_option("regex")
    expect(pattern).to_be_visible()
    pattern.fill(r"(?P<speaker>\d+)_")
    page.get_by_role("button", name="Score").click()
    job_id = queued_job(page)
    row = page.locator(f'#jobs-table tr[data-job="{job_id}"]')
    expect(row).to_have_attribute("data-status", "SUCCEEDED")
    job = console_api.get(f"/jobs/{job_id}").json()
    assert job["SPEAKERS"] == "regex" and job["SPEAKER_PATTERN"] == r"(?P<speaker>\d+)_", job
    page.goto(console_stack.base + "/#run")
    page.get_by_label("A row per speech segment", exact=False).check()
    expect(page.get_by_label("Speakers (each file's speaker", exact=False)).to_be_disabled()
