"""Image and point-cloud transforms: the matrix they report is what they do to the data."""

import cv2
import numpy as np
import pytest

from clap.data.mapper import load_image
from clap.data.transforms import (
    ColorJitter,
    GlobalRotScaleFlipTranslate,
    PhotometricTransform,
    PointCloudTransform,
    ResizeCropFlip,
)

_SOURCE = (200, 400)  # (H, W)
_DOT = (251.5, 121.5)  # (u, v) centre of a 4 x 4 bright square


def _dot_image():
    image = np.zeros(_SOURCE + (3,), dtype=np.uint8)
    u0, v0 = int(_DOT[0] - 1.5), int(_DOT[1] - 1.5)
    image[v0 : v0 + 4, u0 : u0 + 4] = 255
    return image


def _centroid(image):
    weights = image[..., 0].astype(np.float64)
    rows, columns = np.nonzero(weights)
    assert len(rows) > 0, "the dot left the image"
    w = weights[rows, columns]
    return np.array([np.sum(columns * w) / w.sum(), np.sum(rows * w) / w.sum()])


@pytest.mark.parametrize("seed", range(6))
def test_image_content_moves_as_the_reported_matrix_says(seed, tmp_path):
    augmentation = ResizeCropFlip((64, 112), (0.8, 1.3), (0.0, 0.2), 0.5, is_train=True)
    transform = augmentation.get_transform(_SOURCE, np.random.default_rng(seed))
    expected = (transform.matrix @ np.array([*_DOT, 1.0]))[:2]
    np.testing.assert_allclose(_centroid(transform.apply_image(_dot_image())), expected, atol=0.3)

    # The same through a file decoded at reduced size (as the mapper reads images).
    path = str(tmp_path / "dot.png")
    cv2.imwrite(path, _dot_image())
    reduction = transform.decode_reduction
    assert reduction > 1
    output = transform.apply_image(load_image(path, reduction))
    np.testing.assert_allclose(_centroid(output), expected, atol=0.3)


def test_inference_transform_is_centred_and_fits_the_width():
    transform = ResizeCropFlip((64, 112), (0.8, 1.3), (0.1, 0.3), 0.5, is_train=False)
    transform = transform.get_transform(_SOURCE, np.random.default_rng(0))
    assert transform.resized_size == (56, 112) and not transform.flip
    # Cut 20% of 56 rows at the bottom (mean of 0.1 and 0.3): the window starts 45 - 64 rows up.
    assert transform.crop_offset == (45 - 64, 0)
    image = transform.apply_image(_dot_image())
    assert image.shape == (64, 112, 3) and np.all(image[: 64 - 45] == 0)  # padded at the top


def test_intrinsics_follow_the_transform():
    intrinsics = np.array([[500.0, 0, 200], [0, 500, 100], [0, 0, 1]])
    transform = ResizeCropFlip((64, 112), (1.0, 1.0), flip_prob=1.0).get_transform(
        _SOURCE, np.random.default_rng(0)
    )
    point = np.array([0.3, -0.2, 4.0])
    pixel = intrinsics @ point
    moved = transform.apply_intrinsics(intrinsics) @ point
    np.testing.assert_allclose(moved[:2] / moved[2], (transform.matrix @ (pixel / pixel[2]))[:2])


def test_color_jitter_factors_and_identity():
    image = np.random.default_rng(0).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    assert np.array_equal(PhotometricTransform(1.0, 1.0, 1.0).apply_image(image), image)
    brighter = PhotometricTransform(1.2, 1.0, 1.0).apply_image(image)
    np.testing.assert_allclose(brighter, np.clip(image * 1.2, 0, 255), atol=1)
    gray = PhotometricTransform(1.0, 1.0, 0.0).apply_image(image).astype(int)
    assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 1  # no saturation: gray pixels
    flat = PhotometricTransform(1.0, 0.0, 1.0).apply_image(image).astype(int)
    assert flat.max() - flat.min() <= 1  # no contrast: the mean gray everywhere
    jitter = ColorJitter(0.4, 0.4, 0.4).get_transform(np.random.default_rng(1))
    for factor in (jitter.brightness, jitter.contrast, jitter.saturation):
        assert 0.6 <= factor <= 1.4 and factor != 1.0
    # Channel order: BGR in, BGR out, same result as on RGB.
    rgb = jitter.apply_image(image, "RGB")
    bgr = jitter.apply_image(image[..., ::-1].copy(), "BGR")
    assert np.abs(rgb.astype(int) - bgr[..., ::-1]).max() <= 1


def test_point_transform_moves_boxes_with_their_points_and_velocities():
    transform = GlobalRotScaleFlipTranslate((-3, 3), (0.7, 1.3), 0.5, 0.5, (1, 1, 1))
    rng = np.random.default_rng(0)
    boxes = np.array([[5.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.4, 3.0, -1.0]])
    front_point = np.array([[5.0 + 1.9 * np.cos(0.4), 2.0 + 1.9 * np.sin(0.4), -1.0, 7, 0]])
    for _ in range(8):
        augment = transform.get_transform(rng)
        moved_box = augment.apply_boxes(boxes)[0]
        moved_point = augment.apply_points(front_point)[0]
        assert moved_point[3] == 7
        # The point near the front face stays in front along the new heading.
        offset = moved_point[:2] - moved_box[:2]
        heading = np.array([np.cos(moved_box[6]), np.sin(moved_box[6])])
        np.testing.assert_allclose(offset @ heading, 1.9 * augment.scale, rtol=1e-9)
        # After dt seconds the centre is where the transformed velocity says.
        later = boxes.copy()
        later[0, :2] += 0.5 * boxes[0, 7:9]
        np.testing.assert_allclose(
            augment.apply_boxes(later)[0, :2], moved_box[:2] + 0.5 * moved_box[7:9], atol=1e-9
        )
        calibration = np.eye(4)
        calibration[:3, 3] = [0.1, 0.2, 0.3]
        moved_calibration = augment.apply_lidar2cam(calibration)
        point = np.array([1.0, 2.0, 3.0, 1.0])
        np.testing.assert_allclose(
            moved_calibration @ (augment.matrix @ point), calibration @ point, atol=1e-9
        )


def test_point_transform_rejects_shear():
    shear = np.eye(4)
    shear[0, 1] = 0.3
    with pytest.raises(ValueError, match="rotation about z"):
        PointCloudTransform(shear)
