"""Speaker adaptation through the service: training options and results, predictions with a
speaker (JSON, multipart, raw body, `ser predict --speaker`), GET/DELETE /speakers/<id>.
Real gunicorn API, real Celery worker, generated audio."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest

from ser import contract
from ser.service import jobs as J
from tests.harness import ser, upload
from tests.stack.test_http import error_of

pytestmark = pytest.mark.usefixtures("restore_current")


@pytest.fixture(scope="module")
def adapted(client_env, api) -> dict:
    """A speaker-adapted model trained through `ser train` on a dataset with 4 speakers."""
    out = ser(
        client_env,
        *("train", "ds_emodb", "--adapt", "speaker", "--repeats", "2", "--wait", "--json"),
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    body = json.loads(out.stdout)
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    return body


@pytest.fixture
def current(api, adapted) -> dict:
    """The adapted model, made current again (other trainings here replace it)."""
    resp = api.post(f"/models/{adapted['MODEL_VERSION']}/activate")
    assert resp.status_code == 200, resp.text
    return adapted


def new_speaker() -> str:
    return f"spk {uuid.uuid4().hex[:8]}"


def path_of(speaker: str) -> str:
    return "/speakers/" + quote(speaker, safe="")


# -- training ---------------------------------------------------------------------------------
def test_training_result_reports_both_protocols_and_the_adaptation(api, adapted):
    body = adapted
    assert body["STATUS"] == "FITTED" and body["PROTOCOL"] == "stratified"
    assert body["ADAPT"] == "speaker" and body["ADAPT_CHOSEN"] == "speaker"
    assert body["REPEATS"] == 2
    for key in ("F1_MACRO_MEAN", "SPEAKER_F1_MACRO_MEAN", "CHANCE_F1", "SPEAKER_BASELINE_F1"):
        assert 0 <= body[key] <= 1, key
    assert body["F1_MACRO_STD"] >= 0 and body["SPEAKER_F1_MACRO_STD"] >= 0
    assert isinstance(body["SPEAKER_CONFOUNDED"], bool)
    assert body["CHANCE_F1"] < body["F1_MACRO_MEAN"]
    # the registry keeps the same figures; the listing shows them
    model = api.get(f"/models/{body['MODEL_VERSION']}").json()
    assert model["ADAPT"] == "speaker" and model["ADAPT_CHOSEN"] == "speaker"
    assert model["PROTOCOL"] == "stratified"
    assert model["SPEAKER_F1_MACRO_MEAN"] == body["SPEAKER_F1_MACRO_MEAN"]
    assert model["F1_MACRO_MEAN"] == body["F1_MACRO_MEAN"]
    listed = {m["MODEL_VERSION"]: m for m in api.get("/models").json()["MODELS"]}
    assert listed[body["MODEL_VERSION"]]["SPEAKER_F1_MACRO_STD"] == body["SPEAKER_F1_MACRO_STD"]


def test_ser_models_lists_protocol_adaptation_and_both_f1(client_env, adapted):
    out = ser(client_env, "models")
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if f" {adapted['MODEL_VERSION']} " in x)
    assert "stratified" in line and "adapt speaker->speaker" in line
    assert f"speaker F1 {adapted['SPEAKER_F1_MACRO_MEAN']:.3f}" in line


def test_a_dataset_without_speakers_reports_no_speaker_f1(api, trained):
    resp = api.post("/train", json={"dataset": "ds_big", "adapt": "off", "repeats": 1})
    assert resp.status_code == 202, resp.text
    body = api.wait_job(resp.json()["JOB_ID"])
    assert body["JOB_STATUS"] == "SUCCEEDED", body
    assert body["ADAPT"] == "off" and body["ADAPT_CHOSEN"] == "off" and body["REPEATS"] == 1
    assert "SPEAKER_F1_MACRO_MEAN" not in body and body["SPEAKER_BASELINE_F1"] is None
    assert body["SPEAKER_CONFOUNDED"] is False


@pytest.mark.parametrize(
    "body, code",
    [
        ({"dataset": "ds", "adapt": "always"}, "INVALID_ADAPT"),
        ({"dataset": "ds", "adapt": 1}, "MALFORMED_BODY"),
        ({"dataset": "ds", "repeats": 0}, "INVALID_REPEATS"),
        ({"dataset": "ds", "repeats": 21}, "INVALID_REPEATS"),
        ({"dataset": "ds", "repeats": 2.5}, "INVALID_REPEATS"),
        ({"dataset": "ds", "repeats": "3"}, "INVALID_REPEATS"),
        ({"dataset": "ds", "repeats": True}, "INVALID_REPEATS"),
    ],
)
def test_train_refuses_bad_adapt_and_repeats(api, body, code):
    assert error_of(api.post("/train", json=body), 400) == code


def test_get_train_takes_adapt_and_repeats_as_query(api):
    assert error_of(api.get("/train?dataset=ds&repeats=x"), 400) == "INVALID_REPEATS"
    assert error_of(api.get("/train?dataset=ds&repeats=-1"), 400) == "INVALID_REPEATS"
    assert error_of(api.get("/train?dataset=ds&adapt=maybe"), 400) == "INVALID_ADAPT"


def test_single_flight_is_per_adaptation(api, trained):
    off = api.post("/train", json={"dataset": "ds", "adapt": "off", "repeats": 1})
    joined = api.post("/train", json={"dataset": "ds", "adapt": "off", "repeats": 1})
    other = api.post("/train", json={"dataset": "ds", "adapt": "both", "repeats": 1})
    assert off.status_code == joined.status_code == other.status_code == 202
    assert joined.json()["JOB_ID"] == off.json()["JOB_ID"]
    assert joined.headers.get("X-Single-Flight") == "joined"
    assert other.json()["JOB_ID"] != off.json()["JOB_ID"] and "X-Single-Flight" not in other.headers
    assert other.json()["ADAPT"] == "both"
    for job_id in (off.json()["JOB_ID"], other.json()["JOB_ID"]):
        assert api.wait_job(job_id)["JOB_STATUS"] == "SUCCEEDED"


def test_lock_names_differ_by_every_model_choice():
    names = {
        J.train_lock_name("ds", p, a, f)
        for p in ("stratified", "speaker")
        for a in contract.ADAPT_CHOICES
        for f in ("default", "seed")
    }
    assert len(names) == 2 * len(contract.ADAPT_CHOICES) * 2


# -- predictions with a speaker ---------------------------------------------------------------
def test_adapted_once_a_speaker_has_enough_clips(api, current, data_dir):
    from ser.ml.adapt import MIN_CLIPS

    speaker = new_speaker()
    for _ in range(MIN_CLIPS - 1):  # too few clips yet: the raw-feature model answers
        first = api.post(
            "/predict?wait=30", json={"filename": "clips/calm.wav", "speaker": speaker}
        ).json()
        assert first["JOB_STATUS"] == "SUCCEEDED", first
        assert first["MODEL_VERSION"] == current["MODEL_VERSION"]
        assert first["SPEAKER"] == speaker and first["ADAPTED"] is False
    with open(data_dir / "clips" / "tense.wav", "rb") as fh:  # multipart form field
        second = api.post(
            "/predict?wait=30", files={"file": ("t.wav", fh)}, data={"speaker": speaker}
        ).json()
    assert second["SPEAKER"] == speaker and second["ADAPTED"] is True, second
    raw = api.post(  # the clip as the body, the speaker in the query
        "/predict?wait=30&name=e.wav&speaker=" + quote(speaker),
        data=(data_dir / "clips" / "excited.wav").read_bytes(),
        headers={"Content-Type": "audio/wav"},
    ).json()
    assert raw["SPEAKER"] == speaker and raw["ADAPTED"] is True, raw
    assert raw["PROBABILITY"] == max(raw["PROBABILITIES"].values())
    # the speaker's statistics hold every clip, under the model's feature spec
    got = api.get(path_of(speaker))
    assert got.status_code == 200, got.text
    assert got.json() == {"SPEAKER": speaker, "CLIPS": {current["FEATURE_SPEC"]: MIN_CLIPS + 1}}
    # predictions without a speaker are the raw model's, as before
    plain = upload(api, data_dir / "clips" / "calm.wav").json()
    assert plain["ADAPTED"] is False and "SPEAKER" not in plain
    assert plain["EMOTION"] == "neutral"  # EMO-DB's name for the generator's "calm"


def test_queued_prediction_shows_its_speaker(api, current):
    speaker = new_speaker()
    resp = api.post("/predict", json={"filename": "clips/calm.wav", "speaker": speaker})
    assert resp.status_code == 202 and resp.json()["SPEAKER"] == speaker
    assert api.wait_job(resp.json()["JOB_ID"])["SPEAKER"] == speaker


def test_get_and_delete_speakers(api, current):
    speaker = new_speaker()
    assert error_of(api.get(path_of(speaker)), 404) == "SPEAKER_NOT_FOUND"
    assert error_of(api.delete(path_of(speaker)), 404) == "SPEAKER_NOT_FOUND"
    for clip in ("calm", "excited"):
        body = {"filename": f"clips/{clip}.wav", "speaker": speaker}
        assert api.post("/predict?wait=30", json=body).json()["JOB_STATUS"] == "SUCCEEDED"
    gone = api.delete(path_of(speaker))
    assert gone.status_code == 200, gone.text
    assert gone.json() == {
        "SPEAKER": speaker,
        "CLIPS": {current["FEATURE_SPEC"]: 2},
        "DELETED": True,
    }
    assert error_of(api.get(path_of(speaker)), 404) == "SPEAKER_NOT_FOUND"
    assert error_of(api.delete(path_of(speaker)), 404) == "SPEAKER_NOT_FOUND"
    # forgotten: the next clip starts the speaker afresh
    again = api.post("/predict?wait=30", json={"filename": "clips/calm.wav", "speaker": speaker})
    assert again.json()["ADAPTED"] is False
    assert api.get(path_of(speaker)).json()["CLIPS"] == {current["FEATURE_SPEC"]: 1}
    assert error_of(api.get(path_of("a" * 129)), 400) == "INVALID_SPEAKER"
    assert error_of(api.get("/speakers/%01"), 400) == "INVALID_SPEAKER"


def test_speakers_need_the_key(api_url):
    from tests.harness import Api

    for method in ("get", "delete"):
        resp = getattr(Api(api_url, None), method)("/speakers/anyone")
        assert error_of(resp, 401) == "UNAUTHORIZED"


@pytest.mark.parametrize("speaker", ["", "   ", "a" * 129, "a\x00b", "a\r\nb", "x/y", 7, None])
def test_bad_speaker_in_json_is_400(api, current, speaker):
    body = {"filename": "clips/calm.wav", "speaker": speaker}
    if speaker is None:  # JSON null: no speaker at all
        assert api.post("/predict?wait=30", json=body).json()["ADAPTED"] is False
        return
    assert error_of(api.post("/predict", json=body), 400) == "INVALID_SPEAKER"


def test_bad_speaker_in_form_query_or_both_is_400(api, current, data_dir):
    clip = (data_dir / "clips" / "calm.wav").read_bytes()
    form = api.post("/predict", files={"file": ("c.wav", clip)}, data={"speaker": "a\x01"})
    assert error_of(form, 400) == "INVALID_SPEAKER"
    headers = {"Content-Type": "audio/wav"}
    raw = api.post("/predict?speaker=" + "x" * 200, data=clip, headers=headers)
    assert error_of(raw, 400) == "INVALID_SPEAKER"
    raw = api.post("/predict?speaker=", data=clip, headers=headers)
    assert error_of(raw, 400) == "INVALID_SPEAKER"
    both = api.post("/predict?speaker=a", json={"filename": "clips/calm.wav", "speaker": "b"})
    assert error_of(both, 400) == "INVALID_SPEAKER"


def test_cli_predict_and_speakers(client_env, current, data_dir):
    speaker = new_speaker()
    clips = [str(data_dir / "clips" / f"{c}.wav") for c in ("calm", "tense")]
    out = ser(client_env, "predict", *clips, "--speaker", speaker, "--wait", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [j["SPEAKER"] for j in jobs] == [speaker] * 2
    assert not any(j["ADAPTED"] for j in jobs)  # two clips: fewer than MIN_CLIPS
    more = ser(client_env, "predict", *clips, clips[0], "--speaker", speaker, "--wait")
    assert more.returncode == 0, more.stdout + more.stderr
    text = ser(client_env, "predict", clips[0], "--speaker", speaker, "--wait")
    assert text.returncode == 0 and text.stdout.rstrip().endswith("\tadapted"), text.stdout
    shown = ser(client_env, "speakers", speaker, "--json")
    assert json.loads(shown.stdout)["CLIPS"] == {current["FEATURE_SPEC"]: 6}
    assert ser(client_env, "speakers", speaker, "--delete").returncode == 0
    missing = ser(client_env, "speakers", speaker)
    assert missing.returncode != 0 and "SPEAKER_NOT_FOUND" in missing.stderr + missing.stdout
    bad = ser(client_env, "predict", clips[0], "--speaker", "a\x01b", "--wait")
    assert bad.returncode != 0 and "INVALID_SPEAKER" in bad.stdout
