"""The API's query-string parsing (api/schemas.py) in process: no Redis, no server."""

from __future__ import annotations

import pytest

from api import schemas as S
from api.errors import ApiError
from ser.contract import MAX_WAIT


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
def test_a_refused_wait_says_what_is_accepted(value):
    with pytest.raises(ApiError) as err:
        S.parse(S.JobQuery, {"wait": value}, query=True)
    assert err.value.code == "INVALID_WAIT" and err.value.http_status == 400
    # what the parser does: any number from 0, held at MAX_WAIT; never "between 0 and 30"
    assert "0 or more" in err.value.message
    assert f"above {MAX_WAIT} are held at {MAX_WAIT}" in err.value.message


@pytest.mark.parametrize(("value", "held"), [("100", MAX_WAIT), ("2.5", 2.5), ("0", 0.0)])
def test_a_wait_above_the_limit_is_held_at_it(value, held):
    assert S.parse(S.JobQuery, {"wait": value}, query=True).wait == held
    assert S.parse(S.PredictQuery, {"wait": value}, query=True).wait == held
