"""Inter-modal sampling: projecting points into the cameras and reading image features."""

import numpy as np
import torch
from simipu.sampling import project_to_first_camera, sample_image_features

from clap.data.transforms import ImageTransform

HEIGHT, WIDTH, STRIDE = 32, 88, 4


def cameras_front_and_back():
    """lidar2img (2, 4, 4): camera 0 looks along +x, camera 1 along -x (focal 40 px)."""
    intrinsics = torch.eye(4, dtype=torch.float64)
    intrinsics[:3, :3] = torch.tensor([[40.0, 0, WIDTH / 2], [0, 40.0, HEIGHT / 2], [0, 0, 1]])
    front = torch.tensor([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]],
                         dtype=torch.float64)
    back = torch.tensor([[0.0, 1, 0, 0], [0, 0, -1, 0], [-1, 0, 0, 0], [0, 0, 0, 1]],
                        dtype=torch.float64)
    return torch.stack([intrinsics @ front, intrinsics @ back]).float()


def random_points(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    xyz = (torch.rand(count, 3, generator=generator) - 0.5) * torch.tensor([40.0, 16.0, 4.0])
    return xyz[xyz[:, 0].abs() > 1.0]


def test_features_of_a_flipped_image_at_the_flipped_projections_are_unchanged():
    torch.manual_seed(0)
    lidar2img = cameras_front_and_back()
    feature_maps = torch.randn(2, 5, HEIGHT // STRIDE, WIDTH // STRIDE)
    points = random_points(400)

    # the data pipeline's flip of camera 0 (u -> W - 1 - u), folded into its lidar2img
    size = (HEIGHT, WIDTH)
    mirror = np.eye(4)
    mirror[:3, :3] = ImageTransform(size, size, (0, 0), size, flip=True).matrix
    flipped_lidar2img = lidar2img.clone()
    flipped_lidar2img[0] = torch.from_numpy(mirror).float() @ lidar2img[0]
    flipped_maps = feature_maps.clone()
    flipped_maps[0] = feature_maps[0].flip(-1)

    camera, uv, visible = project_to_first_camera(points, lidar2img, size, 0.1)
    camera_f, uv_f, visible_f = project_to_first_camera(points, flipped_lidar2img, size, 0.1)
    assert visible.sum() > 100 and set(camera[visible].tolist()) == {0, 1}
    assert torch.equal(visible, visible_f) and torch.equal(camera[visible], camera_f[visible])
    in_front = visible & (camera == 0)
    assert torch.allclose(uv_f[in_front, 0], WIDTH - 1 - uv[in_front, 0], atol=1e-3)

    features = sample_image_features(feature_maps, STRIDE, camera[visible], uv[visible])
    features_f = sample_image_features(flipped_maps, STRIDE, camera_f[visible], uv_f[visible])
    assert features.shape == (int(visible.sum()), 5)
    assert torch.allclose(features, features_f, atol=1e-4)
    # and the flip matters: the unflipped maps at the flipped projections differ
    wrong = sample_image_features(feature_maps, STRIDE, camera_f[visible], uv_f[visible])
    assert not torch.allclose(features[camera[visible] == 0], wrong[camera[visible] == 0],
                              atol=1e-2)


def test_a_pixel_at_a_cell_centre_reads_exactly_that_cell():
    feature_maps = torch.randn(2, 3, HEIGHT // STRIDE, WIDTH // STRIDE)
    rows, cols = torch.tensor([0, 3, 7, 5]), torch.tensor([0, 10, 21, 4])
    centre = (STRIDE - 1) / 2
    uv = torch.stack([cols * STRIDE + centre, rows * STRIDE + centre], dim=1).float()
    camera = torch.tensor([0, 1, 1, 0])
    features = sample_image_features(feature_maps, STRIDE, camera, uv)
    assert torch.allclose(features, feature_maps[camera, :, rows, cols], atol=1e-6)


def test_visibility_depth_image_bounds_and_first_camera():
    lidar2img = cameras_front_and_back()
    points = torch.tensor([
        [10.0, 0.0, 0.0],    # centre of camera 0
        [-10.0, 0.0, 0.0],   # centre of camera 1
        [0.05, 0.0, 0.0],    # closer than min_depth to camera 0
        [10.0, 30.0, 0.0],   # beside camera 0's image
        [0.0, 0.0, 10.0],    # above both cameras
    ])
    camera, uv, visible = project_to_first_camera(points, lidar2img, (HEIGHT, WIDTH), 0.1)
    assert visible.tolist() == [True, True, False, False, False]
    assert camera[:2].tolist() == [0, 1]
    assert torch.allclose(uv[:2], torch.tensor([[WIDTH / 2, HEIGHT / 2]] * 2))
    # a point seen by two cameras takes the first one
    both = torch.stack([lidar2img[0], lidar2img[0]])
    camera, _, visible = project_to_first_camera(points[:1], both, (HEIGHT, WIDTH), 0.1)
    assert visible.item() and camera.item() == 0
