"""The test harness itself: every test carries the mark of its folder's layer, and tests that
share a stack really run on one xdist worker."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("harness")


def test_xdist_groups_reach_the_scheduler(request):
    if not hasattr(request.config, "workerinput"):
        pytest.skip("not under pytest-xdist: nothing is distributed")
    # --dist loadgroup schedules by the "@group" suffix that xdist appends to node ids; with
    # pytest 9.2 the suffix no longer reached the node id and groups were split silently.
    assert request.node.nodeid.endswith("@harness"), request.node.nodeid


def test_every_test_has_its_layer_and_stack_tests_share_one_group(request):
    items = request.session.items
    layers = {"unit", "redis", "stack", "browser"}
    for item in items:
        marks = {m.name for m in item.iter_markers()} & layers
        folder = item.path.relative_to(request.config.rootpath / "tests").parts[0]
        assert marks == {folder}, (item.nodeid, marks)
    if not hasattr(request.config, "workerinput"):
        return  # no node id suffixes without xdist; the marks above are what it would read
    stack = [item for item in items if item.get_closest_marker("stack")]
    assert all(item.nodeid.endswith("@service") for item in stack), [
        item.nodeid for item in stack if not item.nodeid.endswith("@service")
    ][:5]
