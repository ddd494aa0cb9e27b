"""Speaker statistics: what a speaker's statistics hold, and forgetting them."""

from __future__ import annotations

from flask import Blueprint

from api import schemas as S
from api import service
from api.openapi import operation
from ser.service.speakers import SpeakerNotFound, check_speaker

bp = Blueprint("speakers", __name__)

ANSWERS = {
    400: "not a valid speaker id (INVALID_SPEAKER)",
    404: "no statistics for this speaker (SPEAKER_NOT_FOUND)",
}


def _speaker_clips(speaker: str, forget: bool = False) -> dict:
    s = service()
    speaker = check_speaker(speaker)
    clips = s.speakers.forget(speaker) if forget else s.speakers.clips(speaker)
    if not clips:
        raise SpeakerNotFound(message=f"no statistics for speaker {speaker!r}")
    return {"SPEAKER": speaker, "CLIPS": clips}


@bp.route("/speakers/<speaker>", methods=["GET"])
@operation(
    "get",
    "The clips a speaker's statistics hold, per feature-spec version",
    responses={200: (S.Speaker, "the speaker"), **ANSWERS},
)
def get_speaker(speaker: str):
    """The clips a speaker's statistics hold, per feature-spec version."""
    return S.respond(S.Speaker, _speaker_clips(speaker))


@bp.route("/speakers/<speaker>", methods=["DELETE"])
@operation(
    "delete",
    "Forget a speaker's statistics (every feature-spec version)",
    responses={200: (S.Speaker, "what was forgotten (DELETED: true)"), **ANSWERS},
)
def forget_speaker(speaker: str):
    """Forget a speaker's statistics (every feature-spec version); answers what they held."""
    return S.respond(S.Speaker, dict(_speaker_clips(speaker, forget=True), DELETED=True))
