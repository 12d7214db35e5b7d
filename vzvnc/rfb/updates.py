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

from vzvnc.fb.damage import Copy, Rect, Region


@dataclass(slots=True)
class UpdatePlan:
    """One FramebufferUpdate's content, in the order it must be sent."""

    desktop_size: tuple[int, int] | None = None
    # ExtendedDesktopSize replies, (reason, status) each, sent with the current size.
    extended_sizes: list[tuple[int, int]] = field(default_factory=list)
    desktop_name: bool = False
    # pseudo-encodings confirmed to the client by an empty rectangle (e.g. QEMU keys).
    confirmations: list[int] = field(default_factory=list)
    copy: Copy | None = None
    rects: list[Rect] = field(default_factory=list)
    # The one rectangle the client asked for, when it holds all of ``rects``: the
    # encoder may then send unchanged pixels between them inside it.
    within: Rect | None = None

    def __bool__(self) -> bool:
        return (
            self.desktop_size is not None
            or bool(self.extended_sizes)
            or self.desktop_name
            or bool(self.confirmations)
            or self.copy is not None
            or bool(self.rects)
        )


# rfbproto "ExtendedDesktopSize Pseudo-encoding": why a size is being sent.
REASON_SERVER = 0
REASON_THIS_CLIENT = 1
REASON_OTHER_CLIENT = 2
STATUS_OK = 0
STATUS_PROHIBITED = 1
STATUS_OUT_OF_RESOURCES = 2
STATUS_INVALID_LAYOUT = 3


class ClientUpdateTracker:
    def __init__(self, width: int, height: int) -> None:
        self.bounds = Rect(0, 0, width, height)
        self.changed = Region()
        self.requested = Region()
        self.copy: Copy | None = None
        self.size_changed = False
        self.supports_copy_rect = False
        self.supports_desktop_size = False
        self.supports_extended_desktop_size = False
        self.supports_desktop_name = False
        self.size_announcements: list[tuple[int, int]] = []
        self.name_changed = False
        self.confirmations: list[int] = []
        # rfbproto "EnableContinuousUpdates": an area updated without requests.
        self.continuous: Rect | None = None
        # rfbproto: a non-incremental request is always answered, even when its
        # area is empty or nothing in it changed.
        self.answer_owed = False

    def add_changed(self, region: Region) -> None:
        self.changed.add_region(region)

    def add_copy(self, copy: Copy) -> None:
        if not self.supports_copy_rect:
            self.changed.add(copy.dest)
            return
        if self.copy is not None:
            merged = _compose_scrolls(self.copy, copy)
            if merged is None:
                self.changed.add(copy.dest)
                return
        stale_in_source = self.changed.intersect(copy.source)
        self.changed.add_region(stale_in_source.translate(copy.dx, copy.dy).intersect(copy.dest))
        if self.copy is None:
            self.copy = copy
        else:
            self.copy = merged
            if merged is None or merged.dest.empty:
                self.copy = None
                self.changed.add(_scrolled_area(copy))

    def request(self, incremental: bool, rect: Rect) -> None:
        """A FramebufferUpdateRequest; a non-incremental one owes the whole area."""
        area = rect.intersect(self.bounds)
        if not incremental:
            self.changed.add(area)
            self.answer_owed = True
        self.requested.add(area)

    def resize(self, width: int, height: int, reason: int = REASON_SERVER) -> None:
        self.bounds = Rect(0, 0, width, height)
        self.copy = None
        self.changed = Region([self.bounds])
        self.requested = self.requested.intersect(self.bounds)
        if self.supports_extended_desktop_size:
            self.announce_size(reason, STATUS_OK)
        else:
            self.size_changed = True

    def announce_size(self, reason: int, status: int) -> None:
        """Owe an ExtendedDesktopSize rectangle (a reply, or news of a change)."""
        if self.supports_extended_desktop_size and len(self.size_announcements) < 8:
            self.size_announcements.append((reason, status))

    def rename(self) -> None:
        self.name_changed = True

    def _wanted(self) -> Region:
        """What the client asked for: its outstanding requests plus any continuous area."""
        wanted = self.requested.copy()
        if self.continuous is not None:
            wanted.add(self.continuous.intersect(self.bounds))
        return wanted

    def update_due(self) -> bool:
        if self.answer_owed:
            return True
        if not self.requested and self.continuous is None:
            return False
        if (
            (self.size_changed and self.supports_desktop_size)
            or self.size_announcements
            or (self.name_changed and self.supports_desktop_name)
            or self.confirmations
        ):
            return True
        wanted = self._wanted()
        if self.copy is not None and wanted.intersect(self.copy.dest):
            return True
        return bool(self.changed.intersect_region(wanted))

    def take_update(self) -> UpdatePlan:
        """The update to send now; consumes the outstanding request."""
        plan = UpdatePlan()
        if self.size_changed and self.supports_desktop_size:
            plan.desktop_size = (self.bounds.width, self.bounds.height)
            self.size_changed = False
        plan.extended_sizes, self.size_announcements = self.size_announcements, []
        plan.confirmations, self.confirmations = self.confirmations, []
        if self.name_changed and self.supports_desktop_name:
            plan.desktop_name = True
            self.name_changed = False
        if self.copy is not None:
            copy, self.copy = self.copy, None
            if self._wanted().intersect(copy.dest).area == copy.dest.area:
                plan.copy = copy
            else:
                self.changed.add(copy.dest)
        wanted = self._wanted()
        if len(wanted) == 1 and next(iter(wanted)).contains(self.changed.bounds()):
            # The usual case, a client asking for everything: all of it is due.
            due, self.changed = self.changed, Region()
            plan.within = next(iter(wanted))
        else:
            due = self.changed.intersect_region(wanted)
            self.changed.subtract_region(due)
        plan.rects = list(due)
        self.requested.clear()
        self.answer_owed = False
        return plan


def _scrolled_area(copy: Copy) -> Rect:
    """The region a vertical scroll moved pixels within: its destination and source."""
    return copy.dest.union_bounds(copy.source)


def _compose_scrolls(first: Copy, second: Copy) -> Copy | None:
    """Two scrolls of one region in one direction as one copy (as TigerVNC merges them).

    None when they do not compose (different regions, directions or a sideways move).
    A composed scroll of the whole region leaves an empty destination: nothing survives.
    """
    if first.dx or second.dx or (first.dy > 0) != (second.dy > 0):
        return None
    area = _scrolled_area(first)
    if _scrolled_area(second) != area:
        return None
    dy = first.dy + second.dy
    keep = max(0, area.height - abs(dy))
    top = area.y if dy < 0 else area.y + dy
    return Copy(Rect(area.x, top, area.width, keep), 0, dy)
