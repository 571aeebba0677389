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
# Output channels of f_3D (Conv3d + BN + ReLU on the fused volume, UniPAD: 32); 0 disables f_3D
# and the field reads the fused volume directly.
_C.MODEL.RENDER_HEAD.FIELD_CONV_CHANNELS = 32
# Kernel size (cells, odd) of the f_3D convolution.
_C.MODEL.RENDER_HEAD.FIELD_CONV_KERNEL_SIZE = 3
# Hidden widths of the SDF MLP on [p / scene scale, f_p] (UniPAD: 5 layers of 16).
_C.MODEL.RENDER_HEAD.SDF_HIDDEN_CHANNELS = [16, 16, 16, 16]
# Width of the geometry feature f_geo read out of the SDF MLP next to the SDF.
_C.MODEL.RENDER_HEAD.GEOMETRY_FEATURE_CHANNELS = 16
# Hidden widths of the colour MLP on [p, f_geo, view direction, normal] (UniPAD: 3 layers of 16).
_C.MODEL.RENDER_HEAD.RGB_HIDDEN_CHANNELS = [16, 16]
# Feed the SDF normal (dSDF/dp by autograd, double backward) to the colour MLP.
_C.MODEL.RENDER_HEAD.RGB_USE_NORMALS = True
# Start the SDF as an inside-out sphere (positive around the sensor) of radius INIT_SDF_RADIUS,
# in scaled scene units (1 = max |INPUT.POINT_CLOUD_RANGE| meters).
_C.MODEL.RENDER_HEAD.GEOMETRIC_INIT = True
_C.MODEL.RENDER_HEAD.INIT_SDF_RADIUS = 0.3
# Initial NeuS variance v (learnable); the sigmoid sharpness is exp(10 v) per scaled SDF unit.
_C.MODEL.RENDER_HEAD.INIT_VARIANCE = 0.3
# Samples per ray: stratified uniform between the scene-box entry and exit, plus importance
# samples drawn from the NeuS weights of the uniform ones (paper / UniPAD: 72 + 24 = 96).
_C.MODEL.RENDER_HEAD.NUM_UNIFORM_SAMPLES = 72
_C.MODEL.RENDER_HEAD.NUM_IMPORTANCE_SAMPLES = 24
# Smoothstep trilinear weights (C1 across cells) instead of plain trilinear (UniPAD: plain).
_C.MODEL.RENDER_HEAD.SMOOTH_INTERPOLATION = False
# Loss weights (0 leaves a loss out). Range and SDF losses are L1 in scaled scene units.
# w_L: L1 between rendered and measured range along LiDAR rays.
_C.MODEL.RENDER_HEAD.RANGE_LOSS_WEIGHT = 2.0
# w_sur: |SDF| at the observed LiDAR points (the surface).
_C.MODEL.RENDER_HEAD.SDF_LOSS_WEIGHT = 0.1
# w_C: L1 between rendered and observed colour (in [0, 1]) along camera rays.
_C.MODEL.RENDER_HEAD.RGB_LOSS_WEIGHT = 0.1
# Eikonal term (|dSDF/dp| - 1)^2 at the ray samples (not in the paper).
_C.MODEL.RENDER_HEAD.EIKONAL_LOSS_WEIGHT = 0.0
# L1 range along camera rays whose pixel holds a projected LiDAR point (UniPAD camera-only
# pre-training supervises depth this way; CLAP: 0).
_C.MODEL.RENDER_HEAD.CAMERA_RANGE_LOSS_WEIGHT = 0.0

# Ray sampler (RAY_SAMPLER_REGISTRY): which LiDAR rays and pixels are rendered.
_C.MODEL.RAY_SAMPLER = CN()
_C.MODEL.RAY_SAMPLER.NAME = "Curvature"
# LiDAR rays rendered per sample, N_L (paper: 8192; CPU configs use a few hundred).
_C.MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS = 8192
# Pixels rendered per camera, N_C (paper: 1024; UniPAD depth-aware sampling: 512).
_C.MODEL.RAY_SAMPLER.NUM_PIXELS_PER_CAMERA = 1024
# Curvature sampler: sample uniformly for this many epochs first (the warm-up hook switches
# `use_uniform`; the curvature of an untrained field is noise).
_C.MODEL.RAY_SAMPLER.WARMUP_EPOCHS = 4
# Curvature sampler: per-point weight from the Jacobian J = d n~ / dp of the unit normal:
# "norm" (Frobenius norm |J|) or "mean" (|mean of J's diagonal|, i.e. |trace J| / 3).
_C.MODEL.RAY_SAMPLER.CURVATURE_REDUCTION = "norm"
# Curvature sampler: points per chunk when differentiating the field (bounds memory).
_C.MODEL.RAY_SAMPLER.CURVATURE_CHUNK_SIZE = 65536
# Weighted samplers: Gaussian blur of the projected point weights before drawing pixels,
# kernel size (pixels, odd) and standard deviation (pixels).
_C.MODEL.RAY_SAMPLER.BLUR_KERNEL = 9
_C.MODEL.RAY_SAMPLER.BLUR_SIGMA = 2.0
# LiDAR rays go only through key-frame points inside INPUT.POINT_CLOUD_RANGE (the renderer's
# scene box) and farther than this from the sensor (horizontal distance, meters; UniPAD's close
# radius: nearer returns are the sensor housing and the ego vehicle). The depth-aware sampler
# takes its pixels at the projections of the same points.
_C.MODEL.RAY_SAMPLER.MIN_DISTANCE = 3.0
# Depth-aware sampler (UniPAD): pixels at projected candidate points, filled up from a pixel
# grid of this stride (pixels) ...
_C.MODEL.RAY_SAMPLER.DEPTH_AWARE_GRID_STRIDE = 4
# ... that leaves out this top fraction of the image (mostly sky).
_C.MODEL.RAY_SAMPLER.DEPTH_AWARE_SKY_FRACTION = 0.4
# Geometric curvature sampler: neighbours (points) of the local PCA giving the surface
# variation lambda_min / (lambda_1 + lambda_2 + lambda_3).
_C.MODEL.RAY_SAMPLER.KNN = 32

# Prototype head (PROTOTYPE_HEAD_REGISTRY): swapped assignment prediction between modalities.
_C.MODEL.PROTOTYPE_HEAD = CN()
_C.MODEL.PROTOTYPE_HEAD.NAME = "SwappedPrototypeHead"
# Loss weights w_proto (all prototype terms are multiplied by it; 0 disables the head).
_C.MODEL.PROTOTYPE_HEAD.LOSS_WEIGHT = 1.0

# Detection head (DET_HEAD_REGISTRY): BEV features -> 3D boxes.
_C.MODEL.DET_HEAD = CN()
_C.MODEL.DET_HEAD.NAME = "CenterHead"

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
