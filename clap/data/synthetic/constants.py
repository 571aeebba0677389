"""Fixed numbers of the synthetic world: the nuScenes sensor rig, the LiDAR, timing and classes.

The rig (extrinsics in the ego frame, camera intrinsics at 1600 x 900) is the one of nuScenes
v1.0-mini scene-0061 (vehicle n015). Rotations are (w, x, y, z) quaternions, sensor -> ego;
translations in meters; intrinsics in pixels.
"""

import math

# --------------------------------------------------------------------------------------------
# Sensor rig
# --------------------------------------------------------------------------------------------
LIDAR_CHANNEL = "LIDAR_TOP"
CAMERA_CHANNELS = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)
SENSOR_CHANNELS = (LIDAR_CHANNEL,) + CAMERA_CHANNELS

# channel -> {"translation": (x, y, z) m, "rotation": (w, x, y, z), "intrinsic": 3x3 or None}
RIG = {
    "LIDAR_TOP": {
        "translation": (0.9437130093574524, 0.0, 1.8402299880981445),
        "rotation": (
            0.7077955162816508,
            -0.006492242208333184,
            0.01064621441113813,
            -0.7063073042356348,
        ),
        "intrinsic": None,
    },
    "CAM_FRONT": {
        "translation": (1.7007912397384644, 0.01594563201069832, 1.5109575986862183),
        "rotation": (
            -0.4998015550283196,
            0.5030316162028607,
            -0.4997797976084801,
            0.4973708270951752,
        ),
        "intrinsic": (
            (1266.417203046554, 0.0, 816.2670197447984),
            (0.0, 1266.417203046554, 491.50706579294757),
            (0.0, 0.0, 1.0),
        ),
    },
    "CAM_FRONT_RIGHT": {
        "translation": (1.5508477687835693, -0.4934048056602478, 1.4957480430603027),
        "rotation": (
            0.20603478850847173,
            -0.2026940523050441,
            0.6824507803819122,
            -0.671361076840889,
        ),
        "intrinsic": (
            (1260.8474446004698, 0.0, 807.968244525554),
            (0.0, 1260.8474446004698, 495.3344268742088),
            (0.0, 0.0, 1.0),
        ),
    },
    "CAM_FRONT_LEFT": {
        "translation": (1.5238779783248901, 0.4946313500404358, 1.5093282461166382),
        "rotation": (
            0.6757265024665337,
            -0.6736266502088498,
            0.21214014434501835,
            -0.21122827045220982,
        ),
        "intrinsic": (
            (1272.5979470598488, 0.0, 826.6154927353808),
            (0.0, 1272.5979470598488, 479.75165386361925),
            (0.0, 0.0, 1.0),
        ),
    },
    "CAM_BACK": {
        "translation": (0.02832603082060814, 0.0034513676073402166, 1.5791034698486328),
        "rotation": (
            0.5037872794680454,
            -0.4974024955259019,
            -0.49418502884491305,
            0.5045496096013393,
        ),
        "intrinsic": (
            (809.2209905677063, 0.0, 829.2196003259838),
            (0.0, 809.2209905677063, 481.77842384512485),
            (0.0, 0.0, 1.0),
        ),
    },
    "CAM_BACK_LEFT": {
        "translation": (1.0356910228729248, 0.4847950339317322, 1.5909701585769653),
        "rotation": (
            -0.6924185539528205,
            0.7031619400016538,
            0.11648343244956842,
            -0.11203317865825808,
        ),
        "intrinsic": (
            (1256.7414812095406, 0.0, 792.1125740759628),
            (0.0, 1256.7414812095406, 492.7757465151356),
            (0.0, 0.0, 1.0),
        ),
    },
    "CAM_BACK_RIGHT": {
        "translation": (1.0148781538009644, -0.4805682301521301, 1.562395453453064),
        "rotation": (
            -0.12280980327545893,
            0.13240084154796733,
            0.7004305808062848,
            -0.6904960439070794,
        ),
        "intrinsic": (
            (1259.5137405846733, 0.0, 807.2529053838625),
            (0.0, 1259.5137405846733, 501.19579884916527),
            (0.0, 0.0, 1.0),
        ),
    },
}
# Full-resolution image size of every camera, (W, H) pixels.
FULL_IMAGE_WIDTH = 1600
FULL_IMAGE_HEIGHT = 900

# Ego vehicle footprint (Renault Zoe of nuScenes), meters: length, width. The ego origin is the
# centre of the rear axle; the body extends from -REAR_OVERHANG to LENGTH - REAR_OVERHANG.
EGO_LENGTH = 4.08
EGO_WIDTH = 1.73
EGO_REAR_OVERHANG = 0.8

# --------------------------------------------------------------------------------------------
# LiDAR (Velodyne HDL-32E as in nuScenes)
# --------------------------------------------------------------------------------------------
LIDAR_NUM_BEAMS = 32
LIDAR_MIN_ELEVATION = math.radians(-30.67)  # lowest beam, ring index 0
LIDAR_MAX_ELEVATION = math.radians(10.67)  # highest beam, ring index 31
LIDAR_AZIMUTH_STEPS = 1090  # firings per revolution
LIDAR_FREQUENCY = 20.0  # Hz: one sweep every 50 ms
LIDAR_MAX_RANGE = 70.0  # meters
LIDAR_MIN_RANGE = 1.0  # meters: closer returns are dropped
# Default standard deviation of the Gaussian range noise, meters.
LIDAR_RANGE_NOISE = 0.01

# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
SAMPLE_INTERVAL = 0.5  # seconds between key frames (2 Hz)
SWEEP_INTERVAL = 1.0 / LIDAR_FREQUENCY  # seconds between LiDAR sweeps
MAX_SWEEPS_PER_INTERVAL = 9  # non-key sweeps that fit between two key frames at 20 Hz
# First key frame of the first scene, microseconds since the epoch (a fixed date, never the
# clock); later scenes start SCENE_TIME_GAP_US later each.
BASE_TIMESTAMP_US = 1533110400000000  # 2018-08-01 08:00:00 UTC
SCENE_TIME_GAP_US = 3600 * 1000000

# --------------------------------------------------------------------------------------------
# Classes: nuScenes category name -> detection class, mean size (w, l, h) m and relative spread
# --------------------------------------------------------------------------------------------
# Mean sizes are the nuScenes training-set averages (width, length, height) in meters.
CLASS_SPECS = {
    "car": {"category": "vehicle.car", "size": (1.95, 4.62, 1.73), "spread": (0.05, 0.08, 0.08)},
    "truck": {"category": "vehicle.truck", "size": (2.51, 6.93, 2.84), "spread": (0.08, 0.2, 0.12)},
    "bus": {
        "category": "vehicle.bus.rigid",
        "size": (2.94, 11.19, 3.47),
        "spread": (0.04, 0.1, 0.06),
    },
    "trailer": {
        "category": "vehicle.trailer",
        "size": (2.90, 12.29, 3.87),
        "spread": (0.04, 0.2, 0.08),
    },
    "construction_vehicle": {
        "category": "vehicle.construction",
        "size": (2.73, 6.37, 3.19),
        "spread": (0.08, 0.15, 0.12),
    },
    "pedestrian": {
        "category": "human.pedestrian.adult",
        "size": (0.67, 0.73, 1.77),
        "spread": (0.1, 0.12, 0.06),
    },
    "motorcycle": {
        "category": "vehicle.motorcycle",
        "size": (0.77, 2.11, 1.47),
        "spread": (0.1, 0.08, 0.06),
    },
    "bicycle": {
        "category": "vehicle.bicycle",
        "size": (0.60, 1.70, 1.28),
        "spread": (0.1, 0.05, 0.06),
    },
    "traffic_cone": {
        "category": "movable_object.trafficcone",
        "size": (0.41, 0.41, 1.07),
        "spread": (0.08, 0.08, 0.1),
    },
    "barrier": {
        "category": "movable_object.barrier",
        "size": (2.49, 0.48, 0.98),
        "spread": (0.12, 0.15, 0.08),
    },
}
DETECTION_CLASSES = tuple(CLASS_SPECS)
# Evaluation range of nuScenes' detection_cvpr_2019 config per class, meters (used to place
# objects where the evaluation keeps them).
CLASS_EVAL_RANGE = {
    "car": 50.0,
    "truck": 50.0,
    "bus": 50.0,
    "trailer": 50.0,
    "construction_vehicle": 50.0,
    "pedestrian": 40.0,
    "motorcycle": 40.0,
    "bicycle": 40.0,
    "traffic_cone": 30.0,
    "barrier": 30.0,
}

# nuScenes attribute names (all eight, in the devkit's order).
ATTRIBUTE_NAMES = (
    "vehicle.moving",
    "vehicle.stopped",
    "vehicle.parked",
    "cycle.with_rider",
    "cycle.without_rider",
    "pedestrian.sitting_lying_down",
    "pedestrian.standing",
    "pedestrian.moving",
)
# nuScenes visibility levels: token -> level (fraction of the object visible in the 6 images).
VISIBILITY_LEVELS = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))

# Objects are annotated in a key frame while their centre is this close to the ego (meters).
ANNOTATION_RANGE = 75.0

# --------------------------------------------------------------------------------------------
# World
# --------------------------------------------------------------------------------------------
CURB_HEIGHT = 0.15  # height of sidewalks and every surface off the road, meters
MAP_RESOLUTION = 0.1  # meters per pixel of maps/*.png and of the surface raster
WORLD_MARGIN = 100.0  # the world extends this far beyond every ego position, meters
