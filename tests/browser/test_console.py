"""The web console in Debian's Chromium against a real `ser up` stack with an API key: the key
prompt, a clip's emotion and chart, a recording, a training followed to its end, a running job
cancelled, a folder scored and its CSV downloaded, an older model activated and a newer one
deleted, /docs. Every view is screenshotted into .ser/screenshots/. Waits are conditions
(Playwright's expect), never sleeps."""

from __future__ import annotations

import csv
import io
import re

from tests.audiogen import CLASSES
from tests.browser.conftest import shot
from tests.fixtures import API_KEY


def expect(locator):
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def test_the_page_asks_for_the_key_once_and_keeps_it_for_the_tab(fresh_page, console_stack):
    page = fresh_page
    page.goto(console_stack.base + "/#models")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
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


def test_a_training_is_followed_to_its_end(page, console_stack, console_trained):
    page.goto(console_stack.base + "/#run")
    page.evaluate(SEEN_PROGRESS)  # every progress bar the jobs table shows, as it shows it
    page.get_by_label("Dataset (directory under the data root)").fill("ds_emodb")  # uncached
    page.get_by_label("Features").select_option("seed")
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
    page.goto(console_stack.base + "/#models")
    old_row = page.locator(f'#models-table tr[data-version="{older}"]')
    expect(
        page.locator(f'#models-table tr[data-version="{newer["MODEL_VERSION"]}"]')
    ).to_have_attribute("data-current", "true")
    old_row.get_by_role("button", name="Activate").click()
    expect(old_row).to_have_attribute("data-current", "true")
    expect(page.locator("#models-message")).to_contain_text("now current")
    assert console_api.get("/models").json()["CURRENT"] == older
    old_row.get_by_role("button", name="Confusion").click()
    expect(page.locator("#confusion-img")).to_have_attribute(
        "alt", f"confusion matrix of model {older}"
    )
    assert page.locator("#confusion-img").evaluate("img => img.complete && img.naturalWidth > 0")
    shot(page, "models")
    page.once("dialog", lambda dialog: dialog.accept())  # "Delete model ...?"
    page.locator(f'#models-table tr[data-version="{newer["MODEL_VERSION"]}"]').get_by_role(
        "button", name="Delete"
    ).click()
    expect(page.locator("#models-message")).to_contain_text("deleted")
    expect(
        page.locator(f'#models-table tr[data-version="{newer["MODEL_VERSION"]}"]')
    ).to_have_count(0)


def test_the_api_documentation_renders_the_live_document(page, console_stack):
    page.goto(console_stack.base + "/docs")
    expect(page.get_by_text("Speech emotion recognition service").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/predict").first).to_be_visible()
    shot(page, "docs")
