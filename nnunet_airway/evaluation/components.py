"""The 26-connected components of a binary volume, labelled once, and what the evaluator asks of them: how
many there are, each one alone in its own bounding box, the largest 26- or 6-connected component.

Labelling runs on the foreground's bounding box and every later step on one component's box, with voxel
counts taken from the foreground voxels only (never a whole-box histogram of the labels): an island in a
corner of a 512 x 512 x 400 prediction stretches the box over the whole volume, but costs one labelling pass,
not a copy or a 64-bit table per question.
"""

from __future__ import annotations

from collections.abc import Iterator

import cc3d
import numpy as np
from scipy import ndimage

from nnunet_airway.evaluation.masks import CONNECTIVITIES, Box, bounding_box, paste


def _grown(box: Box, margin: int, shape: tuple[int, ...]) -> Box:
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape, strict=True))  # type: ignore[return-value]


class Components:
    """The 26-connected components of ``volume > 0`` ((Z, Y, X), any dtype; bool is used as it is).

    ``count``: number of components; ``sizes[i]``: voxels of component i; ``boxes[i]``: its tight bounding box
    in volume coordinates. Components are numbered in raster order of their first voxel (cc3d's order).
    The labels (uint32 over the foreground's box) are held while the object lives.
    """

    def __init__(self, volume: np.ndarray) -> None:
        if volume.ndim != 3:
            raise ValueError(f"expected a (Z, Y, X) volume, got shape {volume.shape}")
        self.shape: tuple[int, int, int] = tuple(int(n) for n in volume.shape)  # type: ignore[assignment]
        self.box = bounding_box(volume)
        self.count = 0
        self.sizes = np.zeros(0, np.int64)
        self.boxes: list[Box] = []
        self._labels: np.ndarray | None = None
        if self.box is None:
            return
        crop = volume[self.box]
        binary = np.ascontiguousarray(crop if crop.dtype == bool else crop > 0)
        labels, n = cc3d.connected_components(binary.view(np.uint8), connectivity=26, return_N=True,
                                              binary_image=True)
        self.count = int(n)
        self.sizes = np.bincount(labels[binary], minlength=n + 1)[1:].astype(np.int64)
        offset = [s.start for s in self.box]
        self.boxes = [tuple(slice(s.start + o, s.stop + o) for s, o in zip(where, offset, strict=True))  # type: ignore[misc]
                      for where in ndimage.find_objects(labels)]
        self._labels = labels

    def piece(self, index: int, pad: int = 0) -> np.ndarray:
        """Component ``index`` alone: bool over ``boxes[index]`` with ``pad`` voxels of background on every side."""
        if self._labels is None or not 0 <= index < self.count:
            raise IndexError(f"component {index} of {self.count}")
        local = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(self.boxes[index], self.box,  # type: ignore[arg-type]
                                                                                   strict=True))
        if not pad:
            return self._labels[local] == index + 1
        out = np.zeros(tuple(s.stop - s.start + 2 * pad for s in local), dtype=bool)
        np.equal(self._labels[local], index + 1, out=out[(slice(pad, -pad),) * 3])
        return out

    def pieces(self, min_voxels: int = 1, pad: int = 0) -> Iterator[tuple[np.ndarray, Box]]:
        """(mask, box) of every component with at least ``min_voxels`` voxels, in component order (``pad`` as
        in :meth:`piece`; the box is the component's own)."""
        for index in np.flatnonzero(self.sizes >= min_voxels):
            yield self.piece(int(index), pad), self.boxes[int(index)]

    def largest(self, connectivity: int = 26, margin: int = 0) -> tuple[np.ndarray, Box | None]:
        """The largest ``connectivity``-connected component (6, 18 or 26) as (bool mask, box): the box is the
        component's own grown by ``margin`` voxels (clipped to the volume); (empty array, None) when there is no
        foreground. Ties go to the component found first: the larger 26-connected component's, then raster
        order.

        A 6- or 18-connected component lies inside one 26-connected component, so only 26-connected components
        at least as large as the best found so far are split (each in its own box)."""
        if connectivity not in CONNECTIVITIES:
            raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity}")
        if not self.count:
            return np.zeros((0, 0, 0), dtype=bool), None
        order = np.argsort(-self.sizes, kind="stable")
        if connectivity == 26:
            best, best_box = self.piece(int(order[0])), self.boxes[int(order[0])]
        else:
            best, best_box, best_size = None, None, 0
            for index in order:
                if self.sizes[index] <= best_size:
                    break
                piece, box = self.piece(int(index)), self.boxes[int(index)]
                labels, n = cc3d.connected_components(piece.view(np.uint8), connectivity=connectivity,
                                                      return_N=True, binary_image=True)
                sizes = np.bincount(labels[piece], minlength=n + 1)
                sizes[0] = 0
                number = int(np.argmax(sizes))
                if sizes[number] > best_size:
                    where = ndimage.find_objects(labels, max_label=number)[number - 1]
                    best = labels[where] == number
                    best_box = tuple(slice(b.start + w.start, b.start + w.stop) for b, w in zip(box, where, strict=True))
                    best_size = int(sizes[number])
        grown = _grown(best_box, margin, self.shape)  # type: ignore[arg-type]
        return paste(best, best_box, grown), grown  # type: ignore[arg-type]

    def release(self) -> None:
        """Drop the labels (``piece`` and ``largest`` need them; counts, sizes and boxes stay)."""
        self._labels = None
