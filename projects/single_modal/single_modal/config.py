"""Config of the single-modal baselines: clap's own keys are all they need."""

__all__ = ["add_single_modal_config"]


def add_single_modal_config(cfg) -> None:
    """Prepare `cfg` (from `clap.config.get_cfg()`) for a single-modal config file.

    The LiDAR-only and camera-only models are clap's CLAP meta-architecture with one entry in
    MODEL.MODALITIES, PassThroughFusion, the DepthAware ray sampler and the render head's loss
    weights, all keys of clap's default tree, so nothing is added. The function exists so that
    every project is set up the same way (`add_<project>_config(cfg)` before `merge_from_file`).
    """
    del cfg  # nothing to add: see the docstring
