"""A small module to show syntax colouring in the recordings."""

import itertools
import math
from dataclasses import dataclass


@dataclass
class Point:
    x: float
    y: float

    def distance(self, other: "Point") -> float:
        # Euclidean distance between two points.
        return math.hypot(self.x - other.x, self.y - other.y)


def spiral(n: int) -> list[Point]:
    points = []
    for i in range(n):
        angle = i * 0.5
        points.append(Point(angle * math.cos(angle), angle * math.sin(angle)))
    return points


if __name__ == "__main__":
    total = 0.0
    path = spiral(42)
    for a, b in itertools.pairwise(path):
        total += a.distance(b)
    print(f"length of the spiral: {total:.3f} units, {len(path)} points")
