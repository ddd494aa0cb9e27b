"""The test harness itself: tests that share a stack must really run on one xdist worker."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("harness")


def test_xdist_groups_reach_the_scheduler(request):
    if not hasattr(request.config, "workerinput"):
        pytest.skip("not under pytest-xdist: nothing is distributed")
    # --dist loadgroup schedules by the "@group" suffix that xdist appends to node ids; with
    # pytest 9.2 the suffix no longer reached the node id and groups were split silently.
    assert request.node.nodeid.endswith("@harness"), request.node.nodeid
