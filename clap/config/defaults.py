"""The one default config tree. Every key is commented; yaml files are diffs on top of it.

Units: meters for lengths and positions, radians for angles, pixels for image sizes (H, W),
seconds for time. Axis order for 3D lists is (x, y, z) unless a key says otherwise.
"""

from .config import CfgNode as CN

_C = CN()
_C.VERSION = 1

# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------
_C.MODEL = CN()
# Registered meta-architecture (META_ARCH_REGISTRY): "CLAP", "DetectionModel", ...
_C.MODEL.META_ARCHITECTURE = "CLAP"
# "cpu" or "cuda".
_C.MODEL.DEVICE = "cpu"
# Checkpoint to initialise from (a path); empty for random initialisation.
_C.MODEL.WEIGHTS = ""
# Sparse convolution backend: "auto" (torchsparse when importable, else "torch"), "torchsparse",
# or "torch" (pure-torch coordinate hashing). Both share one weight layout.
_C.MODEL.SPARSE_BACKEND = "auto"
# Which encoders run: any of "lidar", "camera".
_C.MODEL.MODALITIES = ["lidar", "camera"]
# Image normalisation, RGB order, applied to 0-255 pixel values.
_C.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
_C.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
# Down-sampling (x, y, z) from the input voxel grid (INPUT.VOXEL_SIZE) to the shared dense
# volume on which the LiDAR volume, the lifted camera volume and the fused volume live.
_C.MODEL.VOLUME_STRIDE = [8, 8, 8]

# LiDAR encoder (LIDAR_BACKBONE_REGISTRY): sparse voxels -> dense volume (B, C_P, Z, Y, X).
_C.MODEL.LIDAR_BACKBONE = CN()
_C.MODEL.LIDAR_BACKBONE.NAME = "SparseResEncoder"
# Output channels of the dense LiDAR volume P^ (paper: d_P = 256).
_C.MODEL.LIDAR_BACKBONE.OUT_CHANNELS = 256

# Image backbone (IMAGE_BACKBONE_REGISTRY): (B * N_cam, 3, H, W) -> multi-scale feature maps.
_C.MODEL.IMAGE_BACKBONE = CN()
_C.MODEL.IMAGE_BACKBONE.NAME = "ResNetFPN"

# Camera-to-voxel lift (VIEW_TRANSFORM_REGISTRY): image features -> (B, C_I, Z, Y, X).
_C.MODEL.VIEW_TRANSFORM = CN()
_C.MODEL.VIEW_TRANSFORM.NAME = "VoxelProjectionLift"
# Output channels of the camera volume I^ (paper: d_I = 80).
_C.MODEL.VIEW_TRANSFORM.OUT_CHANNELS = 80

# Fusion (FUSION_REGISTRY): (P^, I^) -> F^ (B, C_F, Z, Y, X).
_C.MODEL.FUSION = CN()
_C.MODEL.FUSION.NAME = "ConcatConvFusion"
# Output channels of the fused volume F^ (paper: d_F = 512).
_C.MODEL.FUSION.OUT_CHANNELS = 512

# Render head (RENDER_HEAD_REGISTRY): neural field on the fused volume, NeuS rendering.
_C.MODEL.RENDER_HEAD = CN()
_C.MODEL.RENDER_HEAD.NAME = "NeuSRenderHead"

# Ray sampler (RAY_SAMPLER_REGISTRY): which LiDAR rays and pixels are rendered.
_C.MODEL.RAY_SAMPLER = CN()
_C.MODEL.RAY_SAMPLER.NAME = "Curvature"

# Prototype head (PROTOTYPE_HEAD_REGISTRY): swapped assignment prediction between modalities.
_C.MODEL.PROTOTYPE_HEAD = CN()
_C.MODEL.PROTOTYPE_HEAD.NAME = "SwappedPrototypeHead"
# Loss weights w_proto (all prototype terms are multiplied by it; 0 disables the head).
_C.MODEL.PROTOTYPE_HEAD.LOSS_WEIGHT = 1.0

# Detection head (DET_HEAD_REGISTRY): BEV features -> 3D boxes.
_C.MODEL.DET_HEAD = CN()
_C.MODEL.DET_HEAD.NAME = "CenterHead"
# Number of classes (heatmaps); class indices follow clap.data.classes.DETECTION_CLASSES.
_C.MODEL.DET_HEAD.NUM_CLASSES = 10
# Channels of the shared 3x3 conv on the BEV map, and hidden channels of each output branch.
_C.MODEL.DET_HEAD.SHARED_CHANNELS = 64
_C.MODEL.DET_HEAD.HEAD_CHANNELS = 64
# Heatmap Gaussian radius (CenterPoint): IoU a box shifted by the radius keeps (unitless), and
# the smallest radius (BEV cells).
_C.MODEL.DET_HEAD.MIN_OVERLAP = 0.1
_C.MODEL.DET_HEAD.MIN_RADIUS = 2
# Loss weights: Gaussian focal loss on the heatmaps, L1 on the box regression.
_C.MODEL.DET_HEAD.HEATMAP_LOSS_WEIGHT = 1.0
_C.MODEL.DET_HEAD.BBOX_LOSS_WEIGHT = 0.25
# Per-channel L1 weights: offset x, y (cells), z (m), log l, w, h, sin yaw, cos yaw, vx, vy (m/s).
_C.MODEL.DET_HEAD.CODE_WEIGHTS = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2]
# Decoding: heatmap peaks (maximum in a PEAK_KERNEL x PEAK_KERNEL cell window; 1 = every cell),
# the PRE_NMS_TOP_K best per sample above SCORE_THRESHOLD (probability), per-class circle NMS,
# at most MAX_DETECTIONS per sample (nuScenes accepts 500).
_C.MODEL.DET_HEAD.PEAK_KERNEL = 3
_C.MODEL.DET_HEAD.PRE_NMS_TOP_K = 1000
_C.MODEL.DET_HEAD.SCORE_THRESHOLD = 0.1
_C.MODEL.DET_HEAD.MAX_DETECTIONS = 500
# Circle-NMS radius per class (meters, centre distance in xy), DETECTION_CLASSES order: the square
# roots of CenterPoint's nuScenes thresholds (4, 12, 10, 1, 0.85, 0.175 by task group), which it
# compares with squared distances.
_C.MODEL.DET_HEAD.NMS_RADIUS = [2.0, 3.464, 3.464, 3.162, 3.162, 1.0, 0.922, 0.922, 0.418, 0.418]

# BEV backbone (BEV_BACKBONE_REGISTRY): flattened volume (B, C_F * Z, Y, X) -> BEV features.
# Defaults follow BEVFusion's SECOND + FPN: two stages, concatenated at the input resolution.
_C.MODEL.BEV_BACKBONE = CN()
_C.MODEL.BEV_BACKBONE.NAME = "SecondFPN"
# Extra 3x3 convs per stage after its first (strided) conv.
_C.MODEL.BEV_BACKBONE.LAYER_NUMS = [5, 5]
# Stride of each stage's first conv (cells).
_C.MODEL.BEV_BACKBONE.LAYER_STRIDES = [1, 2]
# Channels of each stage.
_C.MODEL.BEV_BACKBONE.NUM_FILTERS = [128, 256]
# Up-sampling of each stage's output; all stages must end at the same stride.
_C.MODEL.BEV_BACKBONE.UPSAMPLE_STRIDES = [1, 2]
# Channels of each up-sampled map (the output has their sum).
_C.MODEL.BEV_BACKBONE.NUM_UPSAMPLE_FILTERS = [256, 256]

# Pre-training checkpoint (a path) whose encoder weights (keys under lidar_backbone.,
# image_backbone., view_transform., fusion.) initialise a DetectionModel when it is built; empty
# for none. MODEL.WEIGHTS, loaded afterwards by the trainer, overrides it.
_C.MODEL.PRETRAINED_ENCODERS = ""

# ---------------------------------------------------------------------------------------------
# Input: point cloud, voxelization and augmentation
# ---------------------------------------------------------------------------------------------
_C.INPUT = CN()
# Region kept around the LiDAR, (x_min, y_min, z_min, x_max, y_max, z_max), meters.
_C.INPUT.POINT_CLOUD_RANGE = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
# Input voxel size (x, y, z), meters.
_C.INPUT.VOXEL_SIZE = [0.075, 0.075, 0.2]

# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------
_C.DATASETS = CN()
# Names registered in DatasetCatalog, e.g. ("nuscenes_v1.0-mini_train",).
_C.DATASETS.TRAIN = ()
_C.DATASETS.TEST = ()
# Root folder of a nuScenes-format data set (real nuScenes or the synthetic world).
_C.DATASETS.ROOT = "datasets/synthetic_nuscenes"

# ---------------------------------------------------------------------------------------------
# Data loader
# ---------------------------------------------------------------------------------------------
_C.DATALOADER = CN()
# Worker processes per rank (0 loads in the main process).
_C.DATALOADER.NUM_WORKERS = 2

# ---------------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------------
_C.SOLVER = CN()
# Samples per iteration over all ranks (each rank takes IMS_PER_BATCH / world size).
_C.SOLVER.IMS_PER_BATCH = 1
# Total iterations.
_C.SOLVER.MAX_ITER = 1000
# Save a checkpoint every this many iterations (and at the end).
_C.SOLVER.CHECKPOINT_PERIOD = 500

# ---------------------------------------------------------------------------------------------
# Test / evaluation
# ---------------------------------------------------------------------------------------------
_C.TEST = CN()
# Evaluate every this many iterations during training (0: only at the end, when TEST is set).
_C.TEST.EVAL_PERIOD = 0

# ---------------------------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------------------------
# Where checkpoints, metrics.json, TensorBoard event files and config.yaml are written.
_C.OUTPUT_DIR = "output"
# Global seed; a negative value draws one from the clock (and logs it).
_C.SEED = 0
# Write images (renderings, sampling weights, prototype maps) to TensorBoard every this many
# iterations; 0 disables them.
_C.VIS_PERIOD = 0
