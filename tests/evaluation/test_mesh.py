"""Coloured surface meshes (PLY) and 3-D pictures of scored cases: closed surfaces, colours where expected."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.evaluation.mesh import (
    DETECTED,
    FALSE_POSITIVE,
    MISSED,
    NOT_SCORED,
    case_mesh,
    ply_bytes,
    read_ply,
)
from nnunet_airway.evaluation.render3d import DPI, FIGSIZE_INCHES, write_case_mesh
from nnunet_airway.evaluation.runner import evaluate_folder, score_files_or_arrays
from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_image


def edge_use_counts(faces: np.ndarray) -> np.ndarray:
    """How many faces use each undirected edge."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(edges, axis=0, return_counts=True)[1]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture()
def y_case(airway_case) -> tuple[np.ndarray, np.ndarray]:
    """Y-shaped reference (trachea along z at x = 24, children to x = 8 and x = 40); the prediction finds the
    trachea and the child towards x = 8, misses the other and adds a bump on the trachea (false positive)."""
    reference, _ = airway_case("Y")
    prediction = reference.copy()
    prediction[24:, :, 26:] = 0
    prediction[8:13, 12, 27:33] = 1  # attached to the trachea's side (radius 4 around x = 24)
    return prediction, reference


def test_tube_mesh_is_closed_with_the_expected_vertex_count(airway_case) -> None:
    reference, spacing = airway_case("tube")  # a capsule of radius 4 mm, 38 mm long: area 2 pi r L + 4 pi r^2 = 1156 mm^2
    mesh = case_mesh(score_files_or_arrays(reference, reference, spacing, keep_false_positives=True))
    # marching cubes on a 1 mm grid puts about one vertex per mm^2 of surface
    assert 0.7 * 1156 < len(mesh.vertices) < 1.5 * 1156
    assert len(mesh.faces) == 2 * len(mesh.vertices) - 4  # Euler: a closed genus-0 triangle mesh
    assert set(edge_use_counts(mesh.faces).tolist()) == {2}  # every edge shared by exactly two faces
    assert set(mesh.labels.tolist()) == {NOT_SCORED}  # a lone tube is the trachea: not scored, grey


def test_y_mesh_colours_detected_missed_and_false_positive_parts(y_case) -> None:
    prediction, reference = y_case
    score = score_files_or_arrays(prediction, reference, keep_false_positives=True)
    mesh = case_mesh(score)
    assert set(edge_use_counts(mesh.faces).tolist()) == {2}
    assert set(mesh.labels.tolist()) == {DETECTED, MISSED, FALSE_POSITIVE, NOT_SCORED}
    x, _, z = mesh.vertices.T  # physical (x, y, z) mm; identity geometry: x = array axis 3, z = array axis 1
    for region, label in [((z > 33) & (x < 14), DETECTED), ((z > 33) & (x > 34), MISSED),
                          ((x > 30.5) & (z < 15), FALSE_POSITIVE), ((z < 10) & (x < 24), NOT_SCORED)]:
        assert region.sum() > 10 and np.all(mesh.labels[region] == label)
    np.testing.assert_array_equal(mesh.colours[mesh.labels == MISSED], [[0xD7, 0x30, 0x27]] * (mesh.labels == MISSED).sum())


def test_vertices_are_placed_by_the_image_geometry_and_survive_a_ply_round_trip(y_case) -> None:
    prediction, reference = y_case
    score = score_files_or_arrays(prediction, reference, keep_false_positives=True)
    geometry = Geometry(spacing=(0.5, 2.0, 1.5), origin=(-10.0, 20.0, 300.0),
                        direction=(-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    plain = case_mesh(score)
    placed = case_mesh(score, geometry)
    expected = (plain.vertices * [0.5, 2.0, 1.5]) * [-1, 1, 1] + [-10.0, 20.0, 300.0]
    np.testing.assert_allclose(placed.vertices, expected, rtol=0, atol=1e-3)
    back = read_ply(ply_bytes(placed, comments=("test",)))
    np.testing.assert_array_equal(back.vertices, placed.vertices)
    np.testing.assert_array_equal(back.faces, placed.faces)
    np.testing.assert_array_equal(back.labels, placed.labels)


def test_case_picture_has_the_expected_size(y_case, tmp_path: Path) -> None:
    prediction, reference = y_case
    score = score_files_or_arrays(prediction, reference, keep_false_positives=True)
    mesh_path, picture_path = write_case_mesh(score, None, tmp_path, "y")
    assert mesh_path == tmp_path / "y.ply" and mesh_path.read_bytes().startswith(b"ply\nformat binary_little_endian")
    assert png_size(picture_path) == (FIGSIZE_INCHES[0] * DPI, FIGSIZE_INCHES[1] * DPI)


@pytest.mark.parametrize("empty_prediction", [False, True])
def test_evaluate_folder_writes_a_mesh_and_a_picture_per_case(y_case, tmp_path: Path, empty_prediction: bool) -> None:
    prediction, reference = (a.copy() for a in y_case)
    if empty_prediction:
        prediction[:] = 0  # everything missed: red branches, grey trachea, no blue
    geometry = Geometry(spacing=(1.0, 1.0, 1.0))
    for folder, volume in (("pred", prediction), ("ref", reference)):
        write_image(tmp_path / folder / "y_001.nii.gz", volume, geometry)
    evaluate_folder(tmp_path / "pred", tmp_path / "ref", progress=False, mesh_dir=tmp_path / "mesh")
    assert sorted(p.name for p in (tmp_path / "mesh").iterdir()) == ["y_001.ply", "y_001_3d.png"]
    mesh = read_ply((tmp_path / "mesh" / "y_001.ply").read_bytes())
    expected = {MISSED, NOT_SCORED} if empty_prediction else {DETECTED, MISSED, FALSE_POSITIVE, NOT_SCORED}
    assert set(mesh.labels.tolist()) == expected
