"""The ordered list of 3D detection classes: a class index everywhere is a position in it."""

# The ten nuScenes detection classes (the names of nuscenes-devkit's DETECTION_NAMES), in the
# order the common nuScenes detection set-ups (CenterPoint, BEVFusion) use. `gt_labels` in a
# batch and `labels` predicted by a detector index this tuple.
DETECTION_CLASSES = (
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
)
