"""Files of the data set: point clouds, JPEG images, depth maps, map masks and JSON tables.

Every file goes through the project's PathManager. Encodings are deterministic: points as raw
little-endian float32, JPEG and PNG through opencv with fixed parameters, JSON with sorted keys.
"""

import io
import json
import os
from typing import List

import cv2
import numpy as np

from clap.utils.file_io import PathManager

JPEG_QUALITY = 90


class DatasetWriter:
    """Writes under the data set root `root`; paths are relative to it (nuScenes filenames)."""

    def __init__(self, root: str):
        self.root = root

    def _write(self, relative_path: str, payload: bytes) -> None:
        path = os.path.join(self.root, relative_path)
        PathManager.mkdirs(os.path.dirname(path))
        with PathManager.open(path, "wb") as f:
            f.write(payload)

    def write_points(self, relative_path: str, points: np.ndarray) -> None:
        """(N, 5) float32 points as a nuScenes .pcd.bin file."""
        self._write(relative_path, np.ascontiguousarray(points, dtype="<f4").tobytes())

    def write_image(self, relative_path: str, rgb: np.ndarray) -> None:
        """(H, W, 3) uint8 RGB image as JPEG."""
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {relative_path}")
        self._write(relative_path, encoded.tobytes())

    def write_depth(self, image_path: str, depth: np.ndarray) -> None:
        """(H, W) float32 z-depth of the image at `image_path`, as `depth_path(image_path)`."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(depth, dtype=np.float32))
        self._write(depth_path(image_path), buffer.getvalue())

    def write_map(self, map_token: str, mask: np.ndarray) -> None:
        ok, encoded = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise RuntimeError(f"PNG encoding failed for map {map_token}")
        self._write(f"maps/{map_token}.png", encoded.tobytes())

    def write_table(self, version: str, table: str, records: List[dict]) -> None:
        text = json.dumps(records, sort_keys=True, indent=1)
        self._write(f"{version}/{table}.json", text.encode("utf-8"))


def depth_path(image_path: str) -> str:
    """Relative path of the debug depth map of a camera image:
    samples/<CHANNEL>/<name>.jpg -> depth/<CHANNEL>/<name>.npy."""
    parts = image_path.replace("\\", "/").split("/")
    if len(parts) < 3 or not parts[-1].endswith(".jpg"):
        raise ValueError(f"Expected samples/<CHANNEL>/<name>.jpg, got {image_path}")
    return "/".join(["depth", parts[-2], parts[-1][: -len(".jpg")] + ".npy"])
