"""Small phantoms shared by the phantom tests (generated once per session; about a second each)."""

from __future__ import annotations

import pytest

from nnunet_airway.phantoms import Phantom, generate_phantom

SMALL_SHAPE = (64, 96, 96)  # the size other areas train nnU-Net on in tests


@pytest.fixture(scope="session")
def small_phantom() -> Phantom:
    return generate_phantom(7, SMALL_SHAPE)


@pytest.fixture(scope="session")
def medium_phantom() -> Phantom:
    """Finer grid (2.7 mm voxels): more labelled generations, still quick."""
    return generate_phantom(11, (112, 128, 128))
