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
# Sparse convolution backend: "auto" (on CUDA torchsparse, else spconv, when importable; else
# "torch"), "torchsparse" or "spconv" (an error when it cannot be imported; spconv's CPU build has
# no backward), or "torch" (pure-torch coordinate hashing, any device). All share one weight
# layout (K, C_in, C_out), so checkpoints move between them; see docs/encoders.md.
_C.MODEL.SPARSE_BACKEND = "auto"
# Lower precision inside the convolutional encoders on the CPU (clap/layers/autocast.py): ""
# (float32) or "bfloat16" (the image backbone's ResNet, the LiDAR encoder's dense head, the
# fusion's convolution and the BEV backbone compute under torch.autocast, the 2-D ones on
# channels-last inputs, and return float32). The field, its derivatives, the NeuS
# weights and the losses stay float32. Fast on CPUs with AVX-512 BF16 / AMX (docs/performance.md).
_C.MODEL.CPU_AUTOCAST_DTYPE = ""
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
# Channels of voxel_features (x, y, z, intensity, time lag).
_C.MODEL.LIDAR_BACKBONE.IN_CHANNELS = 5
# Channels of the stem submanifold conv.
_C.MODEL.LIDAR_BACKBONE.STEM_CHANNELS = 16
# Channels per stage; stage 0 keeps the input resolution, each later stage halves the axes that
# MODEL.VOLUME_STRIDE still asks for (so each stride must be a power of two <= 2 ** (stages - 1)).
_C.MODEL.LIDAR_BACKBONE.STAGE_CHANNELS = [16, 32, 64, 128]
# Residual blocks (two 3x3x3 submanifold convs each) per stage.
_C.MODEL.LIDAR_BACKBONE.NUM_BLOCKS = [2, 2, 2, 2]
# Kernel (odd, cells) of the dense Conv3d that maps the scattered sparse output to OUT_CHANNELS.
_C.MODEL.LIDAR_BACKBONE.DENSE_KERNEL_SIZE = 3
# MAE block masking in training: fraction of the occupied blocks of each sample whose voxels are
# dropped, and the block edge in input voxels (UniPAD: 8). 0 disables (detection, SimIPU). CLAP
# paper: masking rate 0.9, one rate without a per-modality split (configs/Base-CLAP.yaml masks
# both modalities at 0.9); UniPAD: 0.8 for LiDAR, 0.3 for images (the single-modal configs).
_C.MODEL.LIDAR_BACKBONE.MASK_RATIO = 0.0
_C.MODEL.LIDAR_BACKBONE.MASK_BLOCK_SIZE = 8

# Image backbone (IMAGE_BACKBONE_REGISTRY): (B * N_cam, 3, H, W) -> multi-scale feature maps.
# Takes images normalised by MODEL.PIXEL_MEAN / PIXEL_STD (the meta-architecture normalises, see
# clap.modeling.image_backbone.normalize_images). "ResNetFPN" returns the levels "pN" of
# FPN.OUT_FEATURES, "ResNet" the stages "res*".
_C.MODEL.IMAGE_BACKBONE = CN()
_C.MODEL.IMAGE_BACKBONE.NAME = "ResNetFPN"
# ResNet depth: 18, 34 or 50.
_C.MODEL.IMAGE_BACKBONE.DEPTH = 50
# ResNet stages returned (and fed to the FPN): any of "stem", "res2", "res3", "res4", "res5".
_C.MODEL.IMAGE_BACKBONE.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
# Leading stages frozen (no gradients, frozen norms) among [stem, res2, .., res5]; 0: none.
_C.MODEL.IMAGE_BACKBONE.FREEZE_AT = 0
# Norm of the ResNet: "BN" (trainable batch norm) or "FrozenBN" (fixed statistics and affine).
_C.MODEL.IMAGE_BACKBONE.NORM = "BN"
# Local torchvision-format ResNet checkpoint (e.g. resnet50-0676ba61.pth) loaded at build time;
# "" for random initialisation. Nothing is downloaded.
_C.MODEL.IMAGE_BACKBONE.WEIGHTS = ""
# Random patch masking in training: fraction of patches set to 0 (the mean colour after
# normalisation) and the patch edge in pixels (UniPAD: 32). 0 disables; CLAP paper: 0.9
# (configs/Base-CLAP.yaml); UniPAD: 0.3 (LIDAR_BACKBONE.MASK_RATIO tells both).
_C.MODEL.IMAGE_BACKBONE.MASK_RATIO = 0.0
_C.MODEL.IMAGE_BACKBONE.MASK_PATCH_SIZE = 32
_C.MODEL.IMAGE_BACKBONE.FPN = CN()
# Channels of every FPN level.
_C.MODEL.IMAGE_BACKBONE.FPN.OUT_CHANNELS = 256
# FPN levels built and returned ("p2".."p5", one per ResNet stage of OUT_FEATURES); empty: the
# levels the lift reads (MODEL.VIEW_TRANSFORM.IN_FEATURES). A level nothing reads would hold
# parameters without gradient, which multi-process (DDP) training rejects.
_C.MODEL.IMAGE_BACKBONE.FPN.OUT_FEATURES = []

# Camera-to-voxel lift (VIEW_TRANSFORM_REGISTRY): image features -> (B, C_I, Z, Y, X).
_C.MODEL.VIEW_TRANSFORM = CN()
_C.MODEL.VIEW_TRANSFORM.NAME = "VoxelProjectionLift"
# Output channels of the camera volume I^ (paper: d_I = 80).
_C.MODEL.VIEW_TRANSFORM.OUT_CHANNELS = 80
# Image feature levels sampled at the projected cell centres (averaged; equal channels).
_C.MODEL.VIEW_TRANSFORM.IN_FEATURES = ["p3"]
# Meters: a cell centre not farther than this in front of a camera is not seen by it.
_C.MODEL.VIEW_TRANSFORM.MIN_DEPTH = 0.1
# Depth-distribution lift (LSS / BEVFusion): a 1x1 conv on each sampled feature level predicts per
# feature cell a softmax over DEPTH_BINS equal bins of camera depth, and a cell that samples pixel
# u at depth d gets feature * p(bin holding d | u); a camera does not see cells outside
# DEPTH_RANGE. Depth is z in the camera frame (meters, not the range along the ray), taken from
# lidar2img of the augmented image, so it is exact under image augmentation. A cell reads only
# the bin at its centre: bins much narrower than the cells' extent along the rays leave bins
# unread. 0 disables the head (the camera volume is then constant along each ray).
# BEVFusion's dbound [1, 60, 0.5]: 118 bins of 0.5 m.
_C.MODEL.VIEW_TRANSFORM.DEPTH_BINS = 118
# (min, max) camera depth covered by the bins, meters.
_C.MODEL.VIEW_TRANSFORM.DEPTH_RANGE = [1.0, 60.0]

# Fusion (FUSION_REGISTRY): (P^, I^) -> F^ (B, C_F, Z, Y, X). "ConcatConvFusion": concat + Conv3d
# + BN + ReLU (a conv on the one present volume for single-modal models); "PassThroughFusion":
# single-modal, F^ is the one present volume unchanged (OUT_CHANNELS unused).
_C.MODEL.FUSION = CN()
_C.MODEL.FUSION.NAME = "ConcatConvFusion"
# Output channels of the fused volume F^ (paper: d_F = 512).
_C.MODEL.FUSION.OUT_CHANNELS = 512
# Kernel (odd, cells) of the fusion Conv3d.
_C.MODEL.FUSION.KERNEL_SIZE = 3

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
# Curvature sampler: differentiate the field at most at this many candidate points per sample
# (a uniformly drawn subset; rays are drawn by curvature within it), bounding the sampler's cost;
# 0: at every candidate (the paper). Must be 0 or >= NUM_LIDAR_RAYS.
_C.MODEL.RAY_SAMPLER.CURVATURE_MAX_POINTS = 0
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
# Number of prototypes N_K (paper: 512).
_C.MODEL.PROTOTYPE_HEAD.NUM_PROTOTYPES = 512
# Dimension d_K of the per-cell embeddings and of the prototypes (paper: 128).
_C.MODEL.PROTOTYPE_HEAD.EMBED_DIM = 128
# Hidden width (channels) of the per-cell projection MLPs (LiDAR C_P -> d_K, camera C_I -> d_K).
_C.MODEL.PROTOTYPE_HEAD.PROJ_HIDDEN_DIM = 256
# Temperature tau of the assignment softmax p = softmax(S / tau) over cosine similarities S in
# [-1, 1], dimensionless; used by the EM entropy and as the prediction of the swapped loss. The
# paper's 1.0 caps p at 0.014 for 512 prototypes, so both losses stay at their uniform values;
# 0.1 (SwAV's value) is chosen from the measured study in docs/prototypes.md.
_C.MODEL.PROTOTYPE_HEAD.ASSIGNMENT_TEMPERATURE = 0.1
# Sinkhorn-Knopp iterations for the swapped codes (paper: 3).
_C.MODEL.PROTOTYPE_HEAD.SINKHORN_ITERS = 3
# Temperature (entropic regularisation epsilon) of the Sinkhorn codes, exp(S / epsilon) before
# the equipartition, dimensionless (not in the paper; SwAV's 0.05).
_C.MODEL.PROTOTYPE_HEAD.SINKHORN_TEMPERATURE = 0.05
# Per modality, the most recent embeddings of earlier steps (a first-in first-out queue of this
# many rows) that join the current paired cells in that modality's Sinkhorn equipartition, as
# SwAV's queue does for small batches; 0 = the current cells alone (the paper). On the CPU demo
# it raises the cross-modal agreement but neither setting rescues masking 0.9 / 0.9 there
# (docs/prototypes.md, "Few paired cells").
_C.MODEL.PROTOTYPE_HEAD.SINKHORN_QUEUE_SIZE = 0
# Weight w_SwAV of the swapped-prediction loss (paper: 1.0); logged as loss_swav.
_C.MODEL.PROTOTYPE_HEAD.SWAV_WEIGHT = 1.0
# Weight w_EM of the assignment-entropy loss (paper: 0.1); logged as loss_em.
_C.MODEL.PROTOTYPE_HEAD.EM_WEIGHT = 0.1
# Weight w_GMM of the Gram term (paper: 0.1), applied by GramRegularizerHook (times LOSS_WEIGHT).
_C.MODEL.PROTOTYPE_HEAD.GRAM_WEIGHT = 0.1
# Gram term on the unit prototypes K (clap/modeling/prototype_head/gram.py):
# "mean_squared_off_diagonal" = ||K K^T - I||_F^2 / (N_K (N_K - 1)), minimal for evenly spread
# prototypes; "mean_off_diagonal" = the paper's literal mean of the off-diagonal of K K^T, which
# only centres the prototypes and cannot prevent a collapse (docs/prototypes.md).
_C.MODEL.PROTOTYPE_HEAD.GRAM_TERM = "mean_squared_off_diagonal"
# Schedule of the Gram weight over training: "constant" or "cosine" (GRAM_WEIGHT at iteration 0
# down to 0 at SOLVER.MAX_ITER).
_C.MODEL.PROTOTYPE_HEAD.GRAM_SCHEDULE = "constant"
# PrototypeEMHook statistics period, iterations: usage is accumulated over this many iterations,
# then logged and (with RESEED_DEAD) dead prototypes are re-seeded. Prototypes are put back on
# the unit sphere after every iteration regardless.
_C.MODEL.PROTOTYPE_HEAD.EM_PERIOD = 100
# A prototype is dead when it was the argmax of fewer than this many cells (LiDAR and camera
# assignments together, summed over all ranks) during one EM_PERIOD.
_C.MODEL.PROTOTYPE_HEAD.DEAD_THRESHOLD = 1
# Re-seed dead prototypes from recent cell embeddings at the end of each EM_PERIOD.
_C.MODEL.PROTOTYPE_HEAD.RESEED_DEAD = False
# At most this many paired cells per forward and rank (random subset, torch RNG); 0 = all.
_C.MODEL.PROTOTYPE_HEAD.MAX_PAIRED_CELLS = 0
# Rows of the head's ring buffer of recent unit embeddings used for re-seeding (0: none kept).
_C.MODEL.PROTOTYPE_HEAD.EMBEDDING_BUFFER_SIZE = 4096

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
# compares with squared distances, except barrier: 0.5 m instead of 1 m, below a barrier's thin
# side, since barriers stand side by side (0.62 m apart on tests/data/nuscenes_frame, where a
# 1 m circle removes true barriers).
_C.MODEL.DET_HEAD.NMS_RADIUS = [2.0, 3.464, 3.464, 3.162, 3.162, 0.5, 0.922, 0.922, 0.418, 0.418]

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
# Up-sampling of each stage's output; all stages must end at the same stride (an integer, or 1/k
# for a map k times finer than the input).
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
# Earlier LiDAR sweeps merged into the key frame (each moved into the key LiDAR frame, its time
# lag in seconds in the 5th point channel); fewer are used when a sample has fewer.
_C.INPUT.NUM_SWEEPS = 9
# Points averaged per input voxel at most (the first ones in point order).
_C.INPUT.MAX_POINTS_PER_VOXEL = 10
# Input voxels kept per sample at most (in order of first appearance), training / inference.
_C.INPUT.MAX_VOXELS_TRAIN = 120000
_C.INPUT.MAX_VOXELS_TEST = 160000
# Camera channels loaded, in this order (the N_cam axis of the batch). Empty (default): every
# camera the data has (nuScenes' six in the order CAM_FRONT, CAM_FRONT_RIGHT, CAM_FRONT_LEFT,
# CAM_BACK, CAM_BACK_LEFT, CAM_BACK_RIGHT; other channels after them by name) when
# MODEL.MODALITIES holds "camera", no images otherwise.
_C.INPUT.CAMERAS = []
# Size (H, W) of every image fed to the model, pixels.
_C.INPUT.IMAGE_SIZE = [256, 704]
# Image resize factor range, relative to the scale that fits the source width to IMAGE_SIZE W;
# training draws uniformly from it, inference uses 1.0. Factors below 1 leave zero-filled
# borders (no image there), so the default stays at or above 1.
_C.INPUT.RESIZE_SCALE = [1.0, 1.25]
# Fraction (range) of the resized image height cut off at the bottom before the IMAGE_SIZE H rows
# above it are kept; training draws uniformly, inference uses the mean. The horizontal crop is
# uniform in training and centred at inference.
_C.INPUT.CROP_BOTTOM_RANGE = [0.0, 0.0]
# Probability of a horizontal image flip (training only; each camera draws its own).
_C.INPUT.IMAGE_FLIP_PROB = 0.5
# Photometric jitter strengths (brightness, contrast, saturation): each factor is drawn from
# [1 - s, 1 + s] per image, training only; 0 disables that term.
_C.INPUT.COLOR_JITTER = [0.2, 0.2, 0.2]
# Global point-cloud augmentation (training only), folded into lidar2cam / lidar2img / aug_matrix.
# Rotation about +z drawn uniformly from this range, radians.
_C.INPUT.ROTATION = [-0.78539816, 0.78539816]
# Uniform scale factor range.
_C.INPUT.SCALE = [0.9, 1.1]
# Probability of mirroring the x axis (x -> -x) and the y axis (y -> -y).
_C.INPUT.FLIP_X_PROB = 0.5
_C.INPUT.FLIP_Y_PROB = 0.5
# Standard deviation of a Gaussian translation (x, y, z), meters.
_C.INPUT.TRANSLATION_STD = [0.5, 0.5, 0.5]
# Training drops boxes with fewer LiDAR points than this (the annotation's num_lidar_pts).
_C.INPUT.MIN_BOX_LIDAR_POINTS = 1

# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------
_C.DATASETS = CN()
# Names registered in DatasetCatalog, e.g. ("nuscenes_v1.0-mini_train",).
_C.DATASETS.TRAIN = ()
_C.DATASETS.TEST = ()
# Root folder of a nuScenes-format data set (real nuScenes or the synthetic world).
_C.DATASETS.ROOT = "datasets/synthetic_nuscenes"
# Version folder under ROOT (e.g. "v1.0-mini", "v1.0-trainval"); empty registers every version
# folder found. Data sets are named nuscenes_<version>_<split>, split from the devkit's split
# lists, the version's splits.json, or "all".
_C.DATASETS.VERSION = "v1.0-mini"
# Folder of the per-sample caches (rebuilt when the tables change). Empty: ".clap_cache" under
# DATASETS.ROOT when that folder is writable, else under OUTPUT_DIR.
_C.DATASETS.CACHE_DIR = ""
# Fraction of the samples of each DATASETS.TRAIN set that is used (label-scarce fine-tuning,
# e.g. 0.05 or 0.01); at least one sample. The subset is fixed by TRAIN_FRACTION_SEED.
_C.DATASETS.TRAIN_FRACTION = 1.0
_C.DATASETS.TRAIN_FRACTION_SEED = 0

# ---------------------------------------------------------------------------------------------
# Data loader
# ---------------------------------------------------------------------------------------------
_C.DATALOADER = CN()
# Worker processes per rank (0 loads in the main process).
_C.DATALOADER.NUM_WORKERS = 2
# Shuffle the training set (a new seeded permutation every epoch); False walks it in order.
_C.DATALOADER.SHUFFLE = True
# Copy batches into page-locked memory (faster host-to-GPU copies; ignored without a GPU).
_C.DATALOADER.PIN_MEMORY = True

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
# Periodic checkpoints kept on disk (older ones are deleted; model_final is always kept);
# 0 keeps all.
_C.SOLVER.MAX_TO_KEEP = 0
# Optimizer: "AdamW" or "SGD" (paper pre-training: AdamW).
_C.SOLVER.OPTIMIZER = "AdamW"
# Base learning rate (paper pre-training: 5e-5).
_C.SOLVER.BASE_LR = 5.0e-5
# Decoupled (AdamW) or L2 (SGD) weight decay of weights (paper / UniPAD: 0.01).
_C.SOLVER.WEIGHT_DECAY = 0.01
# Weight decay of normalisation-layer parameters (BatchNorm, LayerNorm, GroupNorm, ...).
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
# Weight decay of bias parameters.
_C.SOLVER.WEIGHT_DECAY_BIAS = 0.0
# AdamW (beta1, beta2) and epsilon.
_C.SOLVER.BETAS = (0.9, 0.999)
_C.SOLVER.EPS = 1.0e-8
# SGD momentum and Nesterov switch.
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
# Learning-rate schedule over MAX_ITER: "cosine" (paper), "multistep" or "constant".
_C.SOLVER.LR_SCHEDULER_NAME = "cosine"
# Final learning rate of the cosine schedule (absolute value).
_C.SOLVER.BASE_LR_END = 0.0
# Iterations at which "multistep" multiplies the learning rate by GAMMA.
_C.SOLVER.STEPS = ()
_C.SOLVER.GAMMA = 0.1
# Linear warm-up: the learning rate grows from WARMUP_FACTOR x the schedule to the schedule
# over the first WARMUP_ITERS iterations (UniPAD: 500 iterations from 1/3); 0 disables it.
_C.SOLVER.WARMUP_ITERS = 500
_C.SOLVER.WARMUP_FACTOR = 1.0 / 3.0
# Gradient clipping, after the after_backward hooks and before the optimizer step.
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = True
# "norm": rescale gradients so their total norm is at most CLIP_VALUE (paper / UniPAD: 35);
# "value": clamp each gradient entry to [-CLIP_VALUE, CLIP_VALUE].
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 35.0
# Order of the norm for CLIP_TYPE "norm" (2.0: Euclidean; "inf" is not a valid yaml float, use
# a large value instead).
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
# Automatic mixed precision: forward pass under torch.autocast.
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
# "bfloat16" (no loss scaling, works on CPU) or "float16" (with a GradScaler).
_C.SOLVER.AMP.DTYPE = "bfloat16"
# Write console / metrics.json / TensorBoard every this many iterations (and at the end).
_C.SOLVER.LOG_PERIOD = 20

# ---------------------------------------------------------------------------------------------
# Test / evaluation
# ---------------------------------------------------------------------------------------------
_C.TEST = CN()
# Evaluate every this many iterations during training (0: only at the end, when TEST is set).
_C.TEST.EVAL_PERIOD = 0
# Samples per batch on each rank at test time.
_C.TEST.BATCH_SIZE = 1
# Meters; > 0 caps every class range of nuscenes-devkit's DetectionEval (boxes farther from the
# ego than their class range, 30-50 m, are not evaluated) at this value, for a grid smaller than
# those ranges. 0 keeps the devkit's ranges.
_C.TEST.EVAL_MAX_RANGE = 0.0

# ---------------------------------------------------------------------------------------------
# CPU runtime (applied by default_setup when MODEL.DEVICE is "cpu"; clap.utils.cpu_runtime)
# ---------------------------------------------------------------------------------------------
_C.CPU = CN()
# torch intra-op threads of each training process (torch.set_num_threads); 0 keeps torch's
# default, one per core. Data-loader workers always use one. With cores shared (workers, other
# jobs) several threads spin at every op's barrier: 1 was 4-13x faster on a loaded 2-core
# machine (docs/performance.md).
_C.CPU.NUM_THREADS = 0
# Keep memory freed by tensors in the process heap for reuse (glibc mallopt: no mmap per large
# block, no trimming) instead of handing it back to the system; saves the page faults of
# re-allocating it every step (5-13% of a CPU step), at the price of a resident size that
# stays at its peak.
_C.CPU.KEEP_FREED_MEMORY = False

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
# DistributedDataParallel: allow parameters that get no gradient in an iteration (slower; needed
# when a branch of the model is skipped, e.g. a modality missing from a batch).
_C.DDP_FIND_UNUSED_PARAMETERS = False
# cuDNN autotuning of convolution algorithms (faster for fixed input sizes, not deterministic).
_C.CUDNN_BENCHMARK = False
