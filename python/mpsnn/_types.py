"""Small MPS structs as frozen dataclasses (graph.md §9.1)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MPSOffset:
    x: int = 0
    y: int = 0
    z: int = 0


@dataclass(frozen=True)
class MTLOrigin:
    x: int = 0
    y: int = 0
    z: int = 0


@dataclass(frozen=True)
class MTLSize:
    width: int = 1
    height: int = 1
    depth: int = 1


@dataclass(frozen=True)
class MTLRegion:
    origin: MTLOrigin = field(default_factory=MTLOrigin)
    size: MTLSize = field(default_factory=MTLSize)

    @staticmethod
    def make_2d(x: int, y: int, width: int, height: int) -> MTLRegion:
        """MTLRegionMake2D."""
        return MTLRegion(MTLOrigin(x, y, 0), MTLSize(width, height, 1))


@dataclass(frozen=True)
class MPSImageReadWriteParams:
    feature_channel_offset: int = 0
    number_of_feature_channels_to_read_write: int = 0
