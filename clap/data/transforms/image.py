"""Image augmentation that reports the pixel map it applies, so intrinsics stay exact.

Pixel convention: integer (u, v) is the centre of a pixel (OpenCV's), u along the width.
A geometric transform maps a source pixel (u, v, 1) to `matrix @ (u, v, 1)` in its output; the
intrinsics of the output image are `matrix @ intrinsics`.
"""

from typing import Sequence, Tuple

import cv2
import numpy as np

__all__ = ["ImageTransform", "ResizeCropFlip", "PhotometricTransform", "ColorJitter"]


class ImageTransform:
    """Resize to `resized_size`, take the `output_size` window at `crop_offset`, maybe mirror.

    Args:
        source_size: (H, W) of the input image, pixels.
        resized_size: (H, W) after resizing, pixels.
        crop_offset: (top, left) of the output window in the resized image, pixels; the window
            may reach outside it, where the output is zero.
        output_size: (H, W) of the output image, pixels.
        flip: mirror the output horizontally.
    """

    def __init__(
        self,
        source_size: Tuple[int, int],
        resized_size: Tuple[int, int],
        crop_offset: Tuple[int, int],
        output_size: Tuple[int, int],
        flip: bool,
    ):
        self.source_size = tuple(int(v) for v in source_size)
        self.resized_size = tuple(int(v) for v in resized_size)
        self.crop_offset = tuple(int(v) for v in crop_offset)
        self.output_size = tuple(int(v) for v in output_size)
        self.flip = bool(flip)

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) float64: source pixel (u, v, 1) -> output pixel."""
        scale_y = self.resized_size[0] / self.source_size[0]
        scale_x = self.resized_size[1] / self.source_size[1]
        # Resizing maps pixel areas: the centre of pixel u lands on (u + 0.5) * scale - 0.5.
        resize = np.array(
            [[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, scale_y, 0.5 * scale_y - 0.5], [0, 0, 1]]
        )
        top, left = self.crop_offset
        crop = np.array([[1.0, 0.0, -left], [0.0, 1.0, -top], [0.0, 0.0, 1.0]])
        matrix = crop @ resize
        if self.flip:
            mirror = np.array([[-1.0, 0.0, self.output_size[1] - 1.0], [0, 1, 0], [0, 0, 1]])
            matrix = mirror @ matrix
        return matrix

    @property
    def decode_reduction(self) -> int:
        """Largest factor (1, 2, 4 or 8) dividing the source size that keeps it >= the resized size.

        An image decoded at 1 / factor of its size (OpenCV's IMREAD_REDUCED_*: each output
        pixel averages a factor x factor block) may be given to `apply_image` instead of the
        full image; the pixel map is the same.
        """
        for factor in (8, 4, 2):
            if all(
                size % factor == 0 and size // factor >= target
                for size, target in zip(self.source_size, self.resized_size)
            ):
                return factor
        return 1

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) image of `source_size`, or of `source_size / decode_reduction`,
        -> (H_out, W_out, C), same dtype."""
        factor = self.source_size[0] // max(image.shape[0], 1)
        if factor not in (1, 2, 4, 8) or (image.shape[0] * factor, image.shape[1] * factor) != (
            self.source_size
        ):
            raise ValueError(
                f"image of size {image.shape[:2]}; this transform takes {self.source_size} or "
                "that size divided by 2, 4 or 8"
            )
        height, width = self.resized_size
        if (height, width) != image.shape[:2]:
            strong_shrink = 2 * height < image.shape[0] and 2 * width < image.shape[1]
            interpolation = cv2.INTER_AREA if strong_shrink else cv2.INTER_LINEAR
            image = cv2.resize(image, (width, height), interpolation=interpolation)
        out_h, out_w = self.output_size
        top, left = self.crop_offset
        if (top, left) == (0, 0) and (height, width) == (out_h, out_w):
            output = image
        else:
            output = np.zeros((out_h, out_w) + image.shape[2:], dtype=image.dtype)
            src_top, src_left = max(top, 0), max(left, 0)
            src_bottom, src_right = min(top + out_h, height), min(left + out_w, width)
            if src_bottom > src_top and src_right > src_left:
                output[src_top - top : src_bottom - top, src_left - left : src_right - left] = (
                    image[src_top:src_bottom, src_left:src_right]
                )
        if self.flip:
            output = output[:, ::-1]
        return np.ascontiguousarray(output)

    def apply_intrinsics(self, intrinsics: np.ndarray) -> np.ndarray:
        """(3, 3) camera matrix of the source image -> that of the output image."""
        return self.matrix @ intrinsics


class ResizeCropFlip:
    """Draws an `ImageTransform` that yields `output_size` images.

    The base scale fits the source width to the output width; training multiplies it by a factor
    drawn from `resize_scale`, cuts a fraction drawn from `crop_bottom_range` of the resized
    height off the bottom, places the window uniformly along the width and flips with
    `flip_prob`. Inference uses factor 1, the mean bottom cut, a centred window and no flip.

    Args:
        output_size: (H, W) pixels.
        resize_scale: (min, max) factor on the base scale.
        crop_bottom_range: (min, max) fraction of the resized height dropped at the bottom.
        flip_prob: probability of a horizontal flip.
        is_train: draw random parameters (else the deterministic inference ones).
    """

    def __init__(
        self,
        output_size: Sequence[int],
        resize_scale: Sequence[float] = (1.0, 1.0),
        crop_bottom_range: Sequence[float] = (0.0, 0.0),
        flip_prob: float = 0.0,
        is_train: bool = True,
    ):
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.resize_scale = (float(resize_scale[0]), float(resize_scale[1]))
        self.crop_bottom_range = (float(crop_bottom_range[0]), float(crop_bottom_range[1]))
        self.flip_prob = float(flip_prob)
        self.is_train = is_train

    def get_transform(self, source_size: Tuple[int, int], rng: np.random.Generator):
        """The transform for a source image of (H, W) pixels."""
        out_h, out_w = self.output_size
        src_h, src_w = source_size
        if self.is_train:
            factor = rng.uniform(*self.resize_scale)
            bottom_cut = rng.uniform(*self.crop_bottom_range)
        else:
            factor, bottom_cut = 1.0, float(np.mean(self.crop_bottom_range))
        scale = factor * out_w / src_w
        height, width = max(1, int(round(src_h * scale))), max(1, int(round(src_w * scale)))
        top = int(round(height * (1.0 - bottom_cut))) - out_h
        slack = width - out_w
        if self.is_train:
            left = int(rng.integers(min(slack, 0), max(slack, 0) + 1))
            flip = rng.random() < self.flip_prob
        else:
            left, flip = int(round(slack / 2)), False
        return ImageTransform(source_size, (height, width), (top, left), self.output_size, flip)


class PhotometricTransform:
    """Brightness, contrast and saturation factors (1 leaves the image as it is).

    Applied in this order: brightness scales every value; contrast scales the distance to the
    image's mean gray value; saturation scales each pixel's distance to its own gray value (gray
    = 0.299 R + 0.587 G + 0.114 B). Together they are one affine colour map, applied in a single
    pass. Photometric changes move no pixel: `matrix` is the identity.
    """

    matrix = np.eye(3)

    def __init__(self, brightness: float, contrast: float, saturation: float):
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def color_map(self, mean_gray: float, channel_order: str = "RGB") -> np.ndarray:
        """(3, 4) map: output colour = map[:, :3] @ input colour + map[:, 3], 0-255 values."""
        weights = _GRAY_WEIGHTS if channel_order == "RGB" else _GRAY_WEIGHTS[::-1]
        gain = self.brightness * self.contrast
        linear = gain * (
            self.saturation * np.eye(3) + (1.0 - self.saturation) * np.outer(np.ones(3), weights)
        )
        offset = (1.0 - self.contrast) * self.brightness * mean_gray
        return np.concatenate([linear, np.full((3, 1), offset)], axis=1)

    def apply_image(self, image: np.ndarray, channel_order: str = "RGB") -> np.ndarray:
        """(H, W, 3) uint8 in `channel_order` ("RGB" or "BGR") -> same shape and order."""
        weights = _GRAY_WEIGHTS if channel_order == "RGB" else _GRAY_WEIGHTS[::-1]
        mean_gray = float(np.dot(cv2.mean(image)[:3], weights))
        return cv2.transform(image, self.color_map(mean_gray, channel_order))


_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])


class ColorJitter:
    """Draws a `PhotometricTransform`: each factor uniform in [1 - s, 1 + s] (s >= 0).

    Args:
        brightness, contrast, saturation: jitter strengths s.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0):
        self.strengths = (float(brightness), float(contrast), float(saturation))
        if min(self.strengths) < 0:
            raise ValueError(f"INPUT.COLOR_JITTER strengths must be >= 0, got {self.strengths}")

    @property
    def enabled(self) -> bool:
        return max(self.strengths) > 0

    def get_transform(self, rng: np.random.Generator) -> PhotometricTransform:
        factors = [
            rng.uniform(max(0.0, 1.0 - s), 1.0 + s) if s > 0 else 1.0 for s in self.strengths
        ]
        return PhotometricTransform(*factors)
