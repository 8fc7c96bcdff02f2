import cv2
import numpy as np
import pandas as pd
import pytest

from features.context import ImageContext
from features.face import (DETECTION_SIDE, MIN_FACE_FRACTION, FaceBox, _cascade_boxes,
                           _smallest_window_side, central_box, face, largest_face)


def grey(height, width, value=128):
    return ImageContext(np.full((height, width, 3), value, np.uint8))


def real_lfw_image(folder) -> np.ndarray:
    labels = pd.read_csv(folder / "labels.csv")
    name = labels.loc[labels.target == 0, "img_name"].iloc[0]
    return cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB)


def test_uniform_image_falls_back_to_the_central_square():
    # 100 x 200: the square is 60% of the short side, 60 pixels, centred.
    assert largest_face(grey(100, 200)) == FaceBox(x=70, y=20, w=60, h=60, fallback=True)


def test_face_family_reports_the_fallback_and_the_box_geometry():
    features = face(grey(100, 200))
    assert features == pytest.approx({"found": 0.0, "width": 60 / 200, "height": 60 / 100,
                                      "centre_x": 0.0, "centre_y": 0.0})


def test_tiny_image_gets_a_one_pixel_or_larger_fallback():
    box = largest_face(grey(2, 3))
    assert box.fallback and box.w == box.h == 1 and 0 <= box.x < 3 and 0 <= box.y < 2


def test_central_box_of_a_square_image():
    assert central_box((250, 250)) == FaceBox(50, 50, 150, 150, True)


def test_a_box_seeded_in_the_context_is_the_one_used():
    ctx = grey(64, 64)
    ctx._shared["face"] = FaceBox(1, 2, 30, 40, False)
    assert largest_face(ctx) == FaceBox(1, 2, 30, 40, False)
    features = face(ctx)
    assert features["found"] == 1.0
    assert features["width"] == pytest.approx(30 / 64)
    assert features["centre_y"] == pytest.approx((2 + 20) / 64 - 0.5)


def test_lfw_face_is_found_near_the_centre(shared_data):
    # LFW crops are aligned on the face: it is centred and about 40-50% of the 250-pixel side.
    box = largest_face(ImageContext(real_lfw_image(shared_data("images/lfw_faceswap"))))
    assert not box.fallback
    assert 0.3 * 250 < box.w < 0.7 * 250
    assert abs(box.x + box.w / 2 - 125) < 25 and abs(box.y + box.h / 2 - 125) < 25


def test_box_is_mapped_back_to_full_resolution(shared_data):
    rgb = real_lfw_image(shared_data("images/lfw_faceswap"))
    small = largest_face(ImageContext(rgb))
    large = largest_face(ImageContext(cv2.resize(rgb, None, fx=2, fy=2,
                                                 interpolation=cv2.INTER_CUBIC)))
    assert not large.fallback
    # Twice the image, twice the box (up to the detector's window steps).
    np.testing.assert_allclose(np.array(large[:4]), 2 * np.array(small[:4]), atol=0.1 * large.w)


def test_smallest_window_side_follows_opencvs_rounded_window_sizes():
    # The cascade's 24-pixel window grown by 1.2 ** k and rounded: 24, 29, 35, 41, 50, 60, 72.
    assert [_smallest_window_side(m) for m in (1, 24, 25, 41, 42, 44, 50, 51, 61)] == \
        [24, 24, 29, 41, 50, 50, 50, 60, 72]


def test_a_face_only_the_smallest_window_fits_is_still_found(shared_data):
    # The LFW crop padded (edges replicated) to 310 pixels: on the 128-pixel copy its face is
    # about 50 pixels, which only the smallest window size scans, so the first, cheaper pass
    # finds nothing and the second must.
    rgb = real_lfw_image(shared_data("images/lfw_faceswap"))
    canvas = np.pad(rgb, ((30, 30), (30, 30), (0, 0)), mode="edge")
    small = cv2.resize(ImageContext(canvas).gray, (DETECTION_SIDE, DETECTION_SIDE),
                       interpolation=cv2.INTER_AREA)
    small = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    min_side = int(MIN_FACE_FRACTION * DETECTION_SIDE)
    assert len(_cascade_boxes(small, _smallest_window_side(min_side) + 1)) == 0
    box = largest_face(ImageContext(canvas))
    found = largest_face(ImageContext(rgb))
    assert not box.fallback
    # The face where it was pasted, about as large as in the crop itself.
    assert abs(box.x + box.w / 2 - (30 + found.x + found.w / 2)) < 0.1 * found.w
    assert abs(box.y + box.h / 2 - (30 + found.y + found.h / 2)) < 0.1 * found.h
    assert 0.8 * found.w < box.w < 1.25 * found.w
