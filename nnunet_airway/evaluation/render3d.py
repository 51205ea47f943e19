"""A 3-D picture of a coloured airway mesh in the style of Qin et al. 2020, Fig. 3: the tree seen from the
front (anterior), trachea up, shaded surfaces. matplotlib's 3-D axes (Figure only, no pyplot)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from nnunet_airway.evaluation.mesh import COLOURS, LABEL_NAMES, SurfaceMesh, colour_volume, surface_mesh, write_ply
from nnunet_airway.evaluation.metrics import CaseScore
from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_bytes

MAX_FACES = 40_000  # matplotlib draws every polygon in Python: beyond this, faces are subsampled
FIGSIZE_INCHES = (7.0, 8.0)
DPI = 100


# light from the viewer's upper left front (LPS: right, anterior, superior), two-sided
LIGHT = np.array([-0.5, -1.0, 0.7]) / np.linalg.norm([-0.5, -1.0, 0.7])


def _lambert(triangles: np.ndarray) -> np.ndarray:
    """(F, 3, 3) triangles -> (F,) brightness in [0.35, 1] from a two-sided diffuse light."""
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return 0.35 + 0.65 * np.abs(normals @ LIGHT)


def _face_subset(n_faces: int, limit: int) -> np.ndarray:
    if n_faces <= limit:
        return np.arange(n_faces)
    return np.random.default_rng(0).choice(n_faces, limit, replace=False)


def render_mesh(mesh: SurfaceMesh, path: str | os.PathLike, title: str = "", max_faces: int = MAX_FACES) -> None:
    """Write a PNG (FIGSIZE_INCHES * DPI pixels) of ``mesh`` seen from anterior (LPS: looking along +y),
    patient superior (+z) up, patient right on the picture's left (radiological convention).

    Faces take the colour of their first vertex; more than ``max_faces`` faces are randomly subsampled
    (make the mesh with a larger marching-cubes step to keep it whole).
    """
    fig = Figure(figsize=FIGSIZE_INCHES, dpi=DPI)
    ax = fig.add_subplot(projection="3d")
    if len(mesh.faces):
        faces = mesh.faces[_face_subset(len(mesh.faces), max_faces)]
        triangles = mesh.vertices[faces]
        colours = COLOURS[mesh.labels[faces[:, 0]]] / 255.0 * _lambert(triangles)[:, None]
        collection = Poly3DCollection(triangles, facecolors=colours, edgecolors="none", linewidths=0)
        ax.add_collection3d(collection)
        low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
        centre, half = (low + high) / 2, max(float((high - low).max()) / 2, 1.0)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_zlim(centre[2] - half, centre[2] + half)
        present = sorted(set(mesh.labels.tolist()) & set(LABEL_NAMES))
        ax.legend(handles=[Patch(color=COLOURS[code] / 255.0, label=LABEL_NAMES[code]) for code in present],
                  loc="lower center", ncol=2, fontsize=8, frameon=False)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=5, azim=-90)  # the viewer at -y (anterior in LPS), x to the right, z up
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.95)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    write_bytes(path, buffer.getvalue())


def read_geometry(path: str | os.PathLike) -> Geometry:
    """The geometry of an image file, read from its header only."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return Geometry(reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())


def write_case_mesh(score: CaseScore, geometry: Geometry | None, folder: str | os.PathLike, case: str) -> tuple[Path, Path]:
    """``folder/CASE.ply`` (full-resolution coloured mesh, physical mm) and ``folder/CASE_3d.png`` (its picture;
    a coarser marching-cubes step when the full mesh has more than MAX_FACES faces). Returns both paths."""
    folder = Path(folder)
    if geometry is None:
        geometry = Geometry(spacing=score.spacing_zyx[::-1])
    labels, offset = colour_volume(score)
    mesh = surface_mesh(labels, offset, geometry)
    mesh_path, picture_path = folder / f"{case}.ply", folder / f"{case}_3d.png"
    write_ply(mesh_path, mesh, comments=(f"nnunet-airway evaluate: {case}", "coordinates: ITK/LPS physical mm",
                                         "colours: green detected, red missed, blue false positive, grey trachea"))
    step = 1
    picture_mesh = mesh
    while len(picture_mesh.faces) > MAX_FACES and step < 8:
        step += 1
        picture_mesh = surface_mesh(labels, offset, geometry, step_size=step)
    m = score.metrics.as_dict()
    bd = "n/a" if m["BD"] is None else f"{m['BD']:.1f}"
    td = "n/a" if m["TD"] is None else f"{m['TD']:.1f}"
    render_mesh(picture_mesh, picture_path,
                title=f"{case}  BD {bd}  TD {td}  ({m['branches_detected']}/{m['branches_reference']} branches)")
    return mesh_path, picture_path
