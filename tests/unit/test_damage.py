"""Region algebra checked against a pixel mask, and the per-client update tracker."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vzvnc.fb import damage
from vzvnc.fb.damage import Copy, Rect, Region
from vzvnc.rfb.updates import ClientUpdateTracker

SIZE = 32
rects = st.builds(
    Rect,
    st.integers(0, SIZE - 1),
    st.integers(0, SIZE - 1),
    st.integers(0, SIZE),
    st.integers(0, SIZE),
)


def mask_of(items: list[Rect] | Region) -> np.ndarray:
    mask = np.zeros((256, 256), dtype=bool)
    for rect in items:
        mask[rect.y : rect.bottom, rect.x : rect.right] = True
    return mask


def disjoint(region: Region) -> bool:
    items = list(region)
    return all(not a.overlaps(b) for i, a in enumerate(items) for b in items[i + 1 :])


@given(st.lists(rects, max_size=20))
@settings(max_examples=300, deadline=None)
def test_union_covers_exactly_the_pixels_added(items: list[Rect]) -> None:
    limit = damage.MAX_RECTS
    damage.MAX_RECTS = 1 << 30  # never simplify: the algebra itself must be exact
    try:
        region = Region(items)
    finally:
        damage.MAX_RECTS = limit
    assert disjoint(region)
    assert (mask_of(region) == mask_of(items)).all()


@given(st.lists(rects, max_size=40))
@settings(max_examples=200, deadline=None)
def test_simplified_union_never_loses_a_pixel(items: list[Rect]) -> None:
    region = Region(items)
    assert len(region) <= damage.MAX_RECTS
    assert (mask_of(region) | ~mask_of(items)).all()


@given(st.lists(rects, max_size=12), rects)
@settings(max_examples=300, deadline=None)
def test_subtract_and_intersect(items: list[Rect], cut: Rect) -> None:
    region = Region(items)
    inside = region.intersect(cut)
    assert (mask_of(inside) == (mask_of(region) & mask_of([cut]))).all()
    region.subtract(cut)
    assert disjoint(region)
    assert (mask_of(region) == (mask_of(items) & ~mask_of([cut]))).all()


def test_rect_subtract_pieces() -> None:
    pieces = Rect(0, 0, 10, 10).subtract(Rect(2, 3, 4, 5))
    assert sum(p.area for p in pieces) == 100 - 20
    assert Rect(0, 0, 4, 4).subtract(Rect(10, 10, 2, 2)) == [Rect(0, 0, 4, 4)]
    assert Rect(0, 0, 4, 4).subtract(Rect(0, 0, 4, 4)) == []


def test_incremental_request_gets_only_changed_within_request() -> None:
    tracker = ClientUpdateTracker(100, 100)
    tracker.request(True, Rect(0, 0, 50, 50))
    assert not tracker.update_due()
    tracker.add_changed(Region([Rect(60, 60, 10, 10)]))
    assert not tracker.update_due()  # changed, but not where the client asked
    tracker.add_changed(Region([Rect(40, 40, 20, 20)]))
    assert tracker.update_due()
    plan = tracker.take_update()
    assert mask_of(plan.rects).sum() == 10 * 10
    assert not tracker.update_due()  # the request is consumed
    tracker.request(True, Rect(0, 0, 100, 100))
    plan = tracker.take_update()
    # the rest of the damage is still owed: (40..60)^2 minus the part sent, plus (60..70)^2
    assert mask_of(plan.rects).sum() == 20 * 20 - 10 * 10 + 10 * 10


def test_non_incremental_request_is_always_answered() -> None:
    tracker = ClientUpdateTracker(100, 100)
    tracker.request(False, Rect(10, 10, 5, 5))
    assert tracker.update_due()
    assert tracker.take_update().rects == [Rect(10, 10, 5, 5)]
    tracker.request(False, Rect(200, 200, 5, 5))  # outside: an empty update, but an answer
    assert tracker.update_due()
    assert tracker.take_update().rects == []


def test_copy_moves_stale_source_pixels_to_their_destination() -> None:
    tracker = ClientUpdateTracker(100, 100)
    tracker.supports_copy_rect = True
    tracker.add_changed(Region([Rect(0, 50, 100, 10)]))  # not yet sent: stale at the client
    tracker.add_copy(Copy(Rect(0, 0, 100, 90), 0, -10))  # scroll up by 10 pixels
    tracker.request(True, Rect(0, 0, 100, 100))
    plan = tracker.take_update()
    assert plan.copy == Copy(Rect(0, 0, 100, 90), 0, -10)
    assert plan.copy.source == Rect(0, 10, 100, 90)
    sent = mask_of(plan.rects)
    assert sent[40:50, :100].all()  # the stale band, moved up by the copy, is resent


def test_copy_without_copyrect_support_becomes_damage() -> None:
    tracker = ClientUpdateTracker(100, 100)
    tracker.add_copy(Copy(Rect(0, 0, 100, 90), 0, -10))
    tracker.request(True, Rect(0, 0, 100, 100))
    plan = tracker.take_update()
    assert plan.copy is None
    assert mask_of(plan.rects)[:90, :100].all()


def test_resize_owes_desktop_size_then_everything() -> None:
    tracker = ClientUpdateTracker(100, 100)
    tracker.supports_desktop_size = True
    tracker.resize(200, 50)
    tracker.request(True, Rect(0, 0, 200, 50))
    plan = tracker.take_update()
    assert plan.desktop_size == (200, 50)
    assert mask_of(plan.rects)[:50, :200].all()
    assert sum(r.area for r in plan.rects) == 200 * 50


def test_consecutive_scrolls_compose_into_one_copy() -> None:
    tracker = ClientUpdateTracker(640, 400)
    tracker.supports_copy_rect = True
    for _ in range(2):  # two one-line scrolls of rows 0..23, each adding a new bottom line
        tracker.add_copy(Copy(Rect(0, 0, 640, 368), 0, -16))
        tracker.add_changed(Region([Rect(0, 368, 640, 16)]))
    tracker.request(True, Rect(0, 0, 640, 400))
    plan = tracker.take_update()
    assert plan.copy == Copy(Rect(0, 0, 640, 352), 0, -32)
    sent = mask_of(plan.rects)
    assert sent[352:384, :640].all()  # the two new lines, the older one moved up
    assert sum(r.area for r in plan.rects) == 640 * 32


def test_scrolls_of_different_regions_do_not_compose() -> None:
    tracker = ClientUpdateTracker(640, 400)
    tracker.supports_copy_rect = True
    tracker.add_copy(Copy(Rect(0, 0, 640, 368), 0, -16))
    tracker.add_copy(Copy(Rect(0, 16, 640, 352), 0, -16))  # rows 1..23 only
    tracker.request(True, Rect(0, 0, 640, 400))
    plan = tracker.take_update()
    assert plan.copy == Copy(Rect(0, 0, 640, 368), 0, -16)
    assert mask_of(plan.rects)[16:368, :640].all()


def test_scrolls_adding_up_to_the_whole_region_leave_no_copy() -> None:
    tracker = ClientUpdateTracker(640, 400)
    tracker.supports_copy_rect = True
    tracker.add_copy(Copy(Rect(0, 0, 640, 200), 0, -200))  # half the screen up
    tracker.add_copy(Copy(Rect(0, 0, 640, 200), 0, -200))
    tracker.request(True, Rect(0, 0, 640, 400))
    plan = tracker.take_update()
    assert plan.copy is None
    assert mask_of(plan.rects)[:400, :640].all()
