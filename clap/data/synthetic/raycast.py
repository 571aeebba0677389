"""Batch ray casting with Embree (embreex) against the static world plus the moving objects.

The static mesh of a scene is put into one Embree scene once; the moving objects get a small
scene per instant. A ray's hit is the nearer of the two (the dynamic scene is cast with the
static hit distance as its far limit, so it only reports closer hits).
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

from .world import WorldMesh

_MISS = np.float32(np.inf)


class MeshCaster:
    """One Embree scene over a `WorldMesh`."""

    def __init__(self, mesh: WorldMesh):
        self.mesh = mesh
        self.scene = None
        # Per face: unit normal (F, 3) and the local-frame corner + two edges (F, 3, 3), so that
        # a hit's normal and local point are one gather and one multiply-add away.
        corners = mesh.vertices[mesh.faces]
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        self.face_normals = (normals / np.maximum(length, 1e-12)).astype(np.float32)
        local = mesh.local
        self.local_edges = np.stack(
            [local[:, 0], local[:, 1] - local[:, 0], local[:, 2] - local[:, 0]], axis=1
        ).astype(np.float32)
        if len(mesh.faces):
            self.scene = rtcore_scene.EmbreeScene()
            TriangleMesh(
                scene=self.scene,
                vertices=np.ascontiguousarray(mesh.vertices, dtype=np.float32),
                indices=np.ascontiguousarray(mesh.faces, dtype=np.int32),
            )

    def intersect(
        self, origins: np.ndarray, directions: np.ndarray, far: Optional[np.ndarray] = None
    ) -> dict:
        """First hits. origins, directions (N, 3) float32 (directions need not be unit: t is in
        units of the direction's length); far (N,) optional upper limit on t.
        Returns t (N,) float32 (inf on a miss), face (N,) int32 (-1), u, v (N,) barycentrics."""
        n = len(origins)
        if self.scene is None or n == 0:
            return {
                "t": np.full(n, _MISS),
                "face": np.full(n, -1, np.int32),
                "u": np.zeros(n, np.float32),
                "v": np.zeros(n, np.float32),
            }
        kwargs = {}
        if far is not None:
            kwargs["dists"] = np.ascontiguousarray(far, dtype=np.float32)
        out = self.scene.run(origins, directions, output=1, **kwargs)
        face = out["primID"]
        t = np.where(face >= 0, out["tfar"], _MISS).astype(np.float32)
        return {"t": t, "face": face, "u": out["u"], "v": out["v"]}

    def occluded(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """(N,) bool: the ray hits something."""
        if self.scene is None or len(origins) == 0:
            return np.zeros(len(origins), dtype=bool)
        return self.scene.run(origins, directions, query="OCCLUDED") == 0


@dataclass
class Hits:
    """Nearest hits of a batch of N rays, K of which hit something.

    Over all rays: t (N,) float32 hit distance in units of the ray direction (inf on a miss),
    object (N,) int object index (-1 on a miss or the world). Over the hits only (in the order
    of `index`, the (K,) indices of the rays that hit): point (K, 3) world m, normal (K, 3)
    unit and facing the ray origin, material (K,), local (K, 3) hit point in the object's own
    frame, dynamic (K,) bool (hit a moving object).
    """

    t: np.ndarray
    object: np.ndarray
    index: np.ndarray
    point: np.ndarray
    normal: np.ndarray
    material: np.ndarray
    local: np.ndarray
    dynamic: np.ndarray


def cast_rays(
    static: MeshCaster, dynamic: MeshCaster, origins: np.ndarray, directions: np.ndarray
) -> Hits:
    """Nearest hits against the static and the dynamic scene.

    Args:
        origins: (N, 3) or (3,) ray origins, world meters.
        directions: (N, 3) ray directions (any length; t is in units of it).
    """
    directions = np.ascontiguousarray(directions, dtype=np.float32)
    n = len(directions)
    origins = np.ascontiguousarray(np.broadcast_to(origins, (n, 3)), dtype=np.float32)
    first = static.intersect(origins, directions)
    t, face, u, v = first["t"], first["face"], first["u"], first["v"]
    is_dynamic = np.zeros(n, dtype=bool)
    if dynamic.scene is not None:
        second = dynamic.intersect(origins, directions, np.minimum(t, np.float32(1e30)))
        closer = np.nonzero(second["face"] >= 0)[0]
        if len(closer):
            is_dynamic[closer] = True
            t, face, u, v = t.copy(), face.copy(), u.copy(), v.copy()
            for array, key in ((t, "t"), (face, "face"), (u, "u"), (v, "v")):
                array[closer] = second[key][closer]
    index = np.nonzero(t < np.inf)[0]
    face = face[index]
    dyn = np.nonzero(is_dynamic[index])[0]
    # Gather per-face data from the static scene, then overwrite the (few) dynamic hits.
    static_face = face.copy()
    static_face[dyn] = 0
    material = static.mesh.material[static_face]
    obj_hit = static.mesh.object[static_face]
    edges = static.local_edges[static_face]
    normal = static.face_normals[static_face]
    if len(dyn):
        dyn_face = face[dyn]
        material[dyn] = dynamic.mesh.material[dyn_face]
        obj_hit[dyn] = dynamic.mesh.object[dyn_face]
        edges[dyn] = dynamic.local_edges[dyn_face]
        normal[dyn] = dynamic.face_normals[dyn_face]
    local = edges[:, 0] + u[index, None] * edges[:, 1] + v[index, None] * edges[:, 2]
    dirs = directions[index]
    facing_away = np.einsum("ij,ij->i", normal, dirs) > 0
    normal *= np.where(facing_away, np.float32(-1), np.float32(1))[:, None]
    point = origins[index] + t[index, None] * dirs
    obj = np.full(n, -1, dtype=np.int64)
    obj[index] = obj_hit
    return Hits(t, obj, index, point, normal, material, local, is_dynamic[index])


def any_hit(
    static: MeshCaster, dynamic: MeshCaster, origins: np.ndarray, directions: np.ndarray
) -> np.ndarray:
    """(N,) bool: the ray hits the static or the dynamic scene (shadow rays)."""
    origins = np.ascontiguousarray(origins, dtype=np.float32)
    directions = np.ascontiguousarray(directions, dtype=np.float32)
    blocked = static.occluded(origins, directions)
    free = ~blocked
    if free.any():
        blocked[free] = dynamic.occluded(origins[free], directions[free])
    return blocked
