"""Synthetic chest CT phantoms with airway trees and their construction truth (numpy and scipy only).

``generate_phantom(seed, shape_zyx, spacing_xyz)`` makes one case in memory; ``write_phantoms(out_dir, n, ...)``
writes a folder of them (NIfTI images and labels, truth JSON, optional preview PNG).
"""

from nnunet_airway.phantoms.case import Phantom
from nnunet_airway.phantoms.generate import DEFAULT_SHAPE_ZYX, case_seed, generate_phantom, write_phantoms

__all__ = ["DEFAULT_SHAPE_ZYX", "Phantom", "case_seed", "generate_phantom", "write_phantoms"]
