"""Rectangles and regions of the framebuffer that changed.

A ``Region`` is a set of pixels stored as disjoint rectangles. It is small by
construction (terminal damage comes in cell rows), and when it grows past
``MAX_RECTS`` it is simplified to its bounding box: sending a few unchanged pixels
again is always correct, losing a changed one never is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_RECTS = 256


@dataclass(frozen=True, slots=True)
class Rect:
    """Half-open pixel rectangle [x, x+width) x [y, y+height)."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    @property
    def area(self) -> int:
        return 0 if self.empty else self.width * self.height

    def intersect(self, other: Rect) -> Rect:
        # Most intersections clip a rectangle that already lies inside: no new object.
        if (
            other.x <= self.x
            and other.y <= self.y
            and self.x + self.width <= other.x + other.width
            and self.y + self.height <= other.y + other.height
            and self.width > 0
            and self.height > 0
        ):
            return self
        x, y = max(self.x, other.x), max(self.y, other.y)
        right, bottom = min(self.right, other.right), min(self.bottom, other.bottom)
        return Rect(x, y, max(0, right - x), max(0, bottom - y))

    def overlaps(self, other: Rect) -> bool:
        return not self.intersect(other).empty

    def contains(self, other: Rect) -> bool:
        return (
            self.x <= other.x
            and self.y <= other.y
            and other.right <= self.right
            and other.bottom <= self.bottom
        )

    def translate(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.width, self.height)

    def subtract(self, other: Rect) -> list[Rect]:
        """``self`` minus ``other`` as up to four disjoint rectangles."""
        cut = self.intersect(other)
        if cut.empty:
            return [] if self.empty else [self]
        pieces = [
            Rect(self.x, self.y, self.width, cut.y - self.y),  # above
            Rect(self.x, cut.bottom, self.width, self.bottom - cut.bottom),  # below
            Rect(self.x, cut.y, cut.x - self.x, cut.height),  # left
            Rect(cut.right, cut.y, self.right - cut.right, cut.height),  # right
        ]
        return [piece for piece in pieces if not piece.empty]

    def union_bounds(self, other: Rect) -> Rect:
        if self.empty:
            return other
        if other.empty:
            return self
        x, y = min(self.x, other.x), min(self.y, other.y)
        return Rect(x, y, max(self.right, other.right) - x, max(self.bottom, other.bottom) - y)


class Region:
    """A set of pixels as disjoint rectangles."""

    __slots__ = ("_rects",)

    def __init__(self, rects: Iterable[Rect] = ()) -> None:
        self._rects: list[Rect] = []
        for rect in rects:
            self.add(rect)

    def __iter__(self) -> Iterator[Rect]:
        return iter(self._rects)

    def __bool__(self) -> bool:
        return bool(self._rects)

    def __len__(self) -> int:
        return len(self._rects)

    def __repr__(self) -> str:
        return f"Region({self._rects!r})"

    @property
    def area(self) -> int:
        return sum(rect.area for rect in self._rects)

    def bounds(self) -> Rect:
        bounds = Rect(0, 0, 0, 0)
        for rect in self._rects:
            bounds = bounds.union_bounds(rect)
        return bounds

    def copy(self) -> Region:
        region = Region()
        region._rects = list(self._rects)
        return region

    def clear(self) -> None:
        self._rects.clear()

    def add(self, rect: Rect) -> None:
        if rect.empty:
            return
        pieces = [rect]
        for existing in self._rects:
            if existing.contains(rect):
                return
            pieces = [part for piece in pieces for part in piece.subtract(existing)]
            if not pieces:
                return
        self._rects.extend(pieces)
        if len(self._rects) > MAX_RECTS:
            self._rects = [self.bounds()]

    @classmethod
    def from_disjoint(cls, rects: Iterable[Rect]) -> Region:
        """A region from rectangles the caller knows do not overlap (no checks)."""
        region = cls()
        region._rects = [rect for rect in rects if not rect.empty]
        if len(region._rects) > MAX_RECTS:
            region._rects = [region.bounds()]
        return region

    def add_region(self, other: Region) -> None:
        if not self._rects:
            # Adding to nothing: other's rectangles are already disjoint.
            self._rects = list(other._rects)
            return
        for rect in other:
            self.add(rect)

    def subtract(self, rect: Rect) -> None:
        self._rects = [part for existing in self._rects for part in existing.subtract(rect)]

    def subtract_region(self, other: Region) -> None:
        for rect in other:
            self.subtract(rect)

    def intersect(self, rect: Rect) -> Region:
        region = Region()
        region._rects = [cut for r in self._rects if not (cut := r.intersect(rect)).empty]
        return region

    def intersect_region(self, other: Region) -> Region:
        region = Region()
        for rect in other:
            region.add_region(self.intersect(rect))
        return region

    def translate(self, dx: int, dy: int) -> Region:
        region = Region()
        region._rects = [rect.translate(dx, dy) for rect in self._rects]
        return region

    def contains_point(self, x: int, y: int) -> bool:
        return any(r.x <= x < r.right and r.y <= y < r.bottom for r in self._rects)


@dataclass(frozen=True, slots=True)
class Copy:
    """Pixels moved within the framebuffer: ``dest`` now holds what was at dest - (dx, dy)."""

    dest: Rect
    dx: int
    dy: int

    @property
    def source(self) -> Rect:
        return self.dest.translate(-self.dx, -self.dy)
