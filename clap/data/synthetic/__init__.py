"""Synthetic driving world written in the nuScenes layout (see docs/synthetic.md)."""

from .generate import generate_dataset
from .tables import scene_names
from .writer import depth_path

__all__ = ["generate_dataset", "scene_names", "depth_path"]
