"""What one client is owed: accumulated damage, its outstanding request, a pending copy.

Sans-IO bookkeeping for rfbproto "FramebufferUpdateRequest" semantics, shaped after
TigerVNC's UpdateTracker: between the framebuffer and a client there is no queue of
frames, only the region that changed since the client last saw it. An update is
due when the client has asked and something it asked for changed; what is sent
is ``changed ∩ requested``, encoded later from the current pixels, so a slow
client simply gets fewer, coalesced updates.

A scroll arrives as a copy (dest rectangle, dx, dy). One copy at a time is kept;
pixels the client has not yet been sent that lie in the copy's source are marked
changed again at their destination, so executing the copy on the client never
spreads stale pixels. A second copy before the first is sent degrades to damage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vzvnc.fb.damage import Rect, Region


@dataclass(frozen=True, slots=True)
class Copy:
    """Pixels moved within the framebuffer: ``dest`` now holds what was at dest - (dx, dy)."""

    dest: Rect
    dx: int
    dy: int

    @property
    def source(self) -> Rect:
        return self.dest.translate(-self.dx, -self.dy)


@dataclass(slots=True)
class UpdatePlan:
    """One FramebufferUpdate's content, in the order it must be sent."""

    desktop_size: tuple[int, int] | None = None
    copy: Copy | None = None
    rects: list[Rect] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.desktop_size is not None or self.copy is not None or bool(self.rects)


class ClientUpdateTracker:
    def __init__(self, width: int, height: int) -> None:
        self.bounds = Rect(0, 0, width, height)
        self.changed = Region()
        self.requested = Region()
        self.copy: Copy | None = None
        self.size_changed = False
        self.supports_copy_rect = False
        self.supports_desktop_size = False
        # rfbproto: a non-incremental request is always answered, even when its
        # area is empty or nothing in it changed.
        self.answer_owed = False

    def add_changed(self, region: Region) -> None:
        self.changed.add_region(region)

    def add_copy(self, copy: Copy) -> None:
        if self.copy is not None or not self.supports_copy_rect:
            self.changed.add(copy.dest)
            return
        stale_in_source = self.changed.intersect(copy.source)
        self.changed.add_region(stale_in_source.translate(copy.dx, copy.dy).intersect(copy.dest))
        self.copy = copy

    def request(self, incremental: bool, rect: Rect) -> None:
        """A FramebufferUpdateRequest; a non-incremental one owes the whole area."""
        area = rect.intersect(self.bounds)
        if not incremental:
            self.changed.add(area)
            self.answer_owed = True
        self.requested.add(area)

    def resize(self, width: int, height: int) -> None:
        self.bounds = Rect(0, 0, width, height)
        self.copy = None
        self.changed = Region([self.bounds])
        self.requested = self.requested.intersect(self.bounds)
        self.size_changed = True

    def update_due(self) -> bool:
        if self.answer_owed:
            return True
        if not self.requested:
            return False
        if self.size_changed and self.supports_desktop_size:
            return True
        if self.copy is not None and self.requested.intersect(self.copy.dest):
            return True
        return bool(self.changed.intersect_region(self.requested))

    def take_update(self) -> UpdatePlan:
        """The update to send now; consumes the outstanding request."""
        plan = UpdatePlan()
        if self.size_changed and self.supports_desktop_size:
            plan.desktop_size = (self.bounds.width, self.bounds.height)
            self.size_changed = False
        if self.copy is not None:
            copy, self.copy = self.copy, None
            if self.requested.intersect(copy.dest).area == copy.dest.area:
                plan.copy = copy
            else:
                self.changed.add(copy.dest)
        due = self.changed.intersect_region(self.requested)
        self.changed.subtract_region(due)
        plan.rects = list(due)
        self.requested.clear()
        self.answer_owed = False
        return plan
