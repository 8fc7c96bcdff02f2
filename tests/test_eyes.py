import cv2
import numpy as np
import pytest
from skimage.color import deltaE_cie76, rgb2lab

from features.context import ImageContext
from features.eyes import eye_window, eyes, row_medians, row_quantiles
from features.face import FaceBox

SKIN = (205, 160, 140)
BOX = FaceBox(20, 20, 200, 200, False)  # eyes expected at (82, 96) and (158, 96), radius 6
GUESSES = ((82, 96), (158, 96))
RADIUS = 6
WINDOW = 21  # pixels the eye window spans before resampling: 2 round(1.6 x 6) + 1


def face_image(iris_colours, highlights=((0, 0), (0, 0)), shift=(3, -2)):
    """A skin-coloured image with two flat iris discs (moved by ``shift`` from where the face box
    expects them) and, for each highlight offset not None, a 2 x 2 white corneal highlight."""
    image = np.full((240, 240, 3), SKIN, np.uint8)
    for (gx, gy), colour, highlight in zip(GUESSES, iris_colours, highlights):
        cx, cy = gx + shift[0], gy + shift[1]
        cv2.circle(image, (cx, cy), RADIUS, colour, thickness=-1)
        if highlight is not None:
            hx, hy = cx + highlight[0], cy + highlight[1]
            image[hy:hy + 2, hx:hx + 2] = 255
    return image


def eyes_of(image):
    ctx = ImageContext(image)
    ctx.shared("face", lambda: BOX)
    return eyes(ctx)


def test_identical_eyes_agree_in_every_pair_statistic():
    out = eyes_of(face_image([(70, 90, 150)] * 2, highlights=((2, -3), (2, -3))))
    assert out["colour_distance"] == pytest.approx(0, abs=0.5)
    assert out["highlight_offset"] == pytest.approx(0, abs=1e-9)
    assert out["highlight_iou"] == pytest.approx(1)
    assert out["ncc"] > 0.99
    assert max(v for k, v in out.items() if k.startswith("diff__")) < 0.1


def test_iris_colours_are_compared_in_cielab():
    blue, brown = (60, 90, 160), (110, 70, 40)
    out = eyes_of(face_image([blue, brown], highlights=((2, -3), (2, -3))))
    lab = rgb2lab(np.array([[blue, brown]], np.float64) / 255)[0]
    assert out["colour_distance"] == pytest.approx(deltaE_cie76(lab[0], lab[1]), abs=1.0)
    assert out["diff__iris_l"] == pytest.approx(abs(lab[0, 0] - lab[1, 0]), abs=1.0)
    assert out["mean__iris_b"] == pytest.approx((lab[0, 2] + lab[1, 2]) / 2, abs=1.0)


def test_highlights_in_different_places_are_measured_in_window_widths():
    # Left highlight 3 pixels right of its iris centre, right one 3 pixels left: 6 pixels apart
    # on a window of 21, whatever brightness or colour the irises have.
    out = eyes_of(face_image([(70, 90, 150)] * 2, highlights=((2, -3), (-4, -3))))
    assert out["highlight_offset"] == pytest.approx(6 / WINDOW, abs=1.5 / 24)
    assert out["diff__highlight_x"] == pytest.approx(6 / WINDOW, abs=1.5 / 24)
    assert out["diff__highlight_y"] == pytest.approx(0, abs=1e-9)
    assert out["highlight_iou"] == pytest.approx(0)


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_a_large_highlight_does_not_move_the_iris_centre(offset):
    # A 4 x 4 highlight starting `offset` pixels right of the iris centre: its middle sits
    # offset + 1.5 pixels from the centre, in both eyes.
    image = face_image([(70, 90, 150)] * 2, highlights=(None, None))
    for gx, gy in GUESSES:
        cx, cy = gx + 3, gy - 2
        image[cy - 1:cy + 3, cx + offset:cx + offset + 4] = 255
    out = eyes_of(image)
    assert out["mean__highlight_x"] == pytest.approx((offset + 1.5) / WINDOW, abs=1 / 24)


def test_an_eye_without_a_highlight_differs_in_its_peak():
    out = eyes_of(face_image([(70, 90, 150)] * 2, highlights=((2, -3), None)))
    same = eyes_of(face_image([(70, 90, 150)] * 2, highlights=((2, -3), (2, -3))))
    assert out["diff__highlight_peak"] > 1.0 > same["diff__highlight_peak"]
    assert out["highlight_iou"] < 0.5


def test_noise_on_one_eye_shows_in_the_noise_difference():
    image = face_image([(70, 90, 150)] * 2, highlights=((2, -3), (2, -3)))
    noisy = image.astype(np.float64)
    x, y = GUESSES[1][0] + 3, GUESSES[1][1] - 2
    rng = np.random.default_rng(0)
    noisy[y - 12:y + 13, x - 12:x + 13] += rng.normal(0, 12, (25, 25, 1))
    out = eyes_of(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    assert out["diff__noise"] > 1.0
    assert eyes_of(image)["diff__noise"] < 0.1


def test_names_are_fixed_and_any_image_gives_finite_values():
    rng = np.random.default_rng(1)
    outs = [eyes(ImageContext(rng.integers(0, 256, shape, dtype=np.uint8)))
            for shape in ((64, 64, 3), (333, 517, 3), (8, 8, 3))]
    outs.append(eyes(ImageContext(np.zeros((50, 50, 3), np.uint8))))
    assert list(outs[0]) == list(outs[1]) == list(outs[2]) == list(outs[3])
    assert len(outs[0]) == 25
    assert all(np.isfinite(list(out.values())).all() for out in outs)


def test_row_medians_and_quantiles_by_hand():
    rows = np.array([[3, 1, 2, 9], [4, 4, 0, 8]], np.float32)
    # Sorted: 1 2 3 9 and 0 4 4 8; even length: the mean of the two middle values.
    np.testing.assert_array_equal(row_medians(rows), [2.5, 4.0])
    np.testing.assert_array_equal(row_medians(rows[:, :3]), [2.0, 4.0])  # odd: the middle one
    # Linear interpolation at (n - 1) q: q = 0.9 of 4 values sits at 2.7, 0.7 of the way from
    # the third to the fourth smallest; q = 0 and 1 are the extremes.
    np.testing.assert_allclose(row_quantiles(rows, 0.9), [3 + 0.7 * 6, 4 + 0.7 * 4], rtol=1e-6)
    np.testing.assert_array_equal(row_quantiles(rows, 0.0), [1, 0])
    np.testing.assert_array_equal(row_quantiles(rows, 1.0), [9, 8])
    assert row_medians(rows).dtype == row_quantiles(rows, 0.9).dtype == np.float32


@pytest.mark.parametrize("n", [1, 2, 7, 24, 125, 576])
def test_row_medians_and_quantiles_agree_with_numpy(n):
    rng = np.random.default_rng(n)
    rows = rng.normal(50, 20, (2, n)).astype(np.float32)
    rows[1] = np.round(rows[1] / 10)  # many ties
    np.testing.assert_allclose(row_medians(rows), np.median(rows, axis=1), rtol=1e-6)
    for q in (0.1, 0.5, 0.9):
        np.testing.assert_allclose(row_quantiles(rows, q), np.quantile(rows, q, axis=1),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("centre", [(60, 50), (3, 50), (60, 118), (0, 0)])
def test_eye_window_replicates_the_edges(centre):
    # Pixel (y, x) of the image holds 2 x in red and y in green; the window reads pixel
    # (clip(y), clip(x)) for every offset, then resamples and converts to CIELAB.
    y, x = np.mgrid[0:120, 0:100]
    rgb = np.dstack([2 * x, y, np.full_like(x, 90)]).astype(np.uint8)
    half = 10
    rows = np.clip(np.arange(centre[1] - half, centre[1] + half + 1), 0, 119)
    cols = np.clip(np.arange(centre[0] - half, centre[0] + half + 1), 0, 99)
    expected = cv2.cvtColor(cv2.resize(rgb[np.ix_(rows, cols)].astype(np.float32) / 255,
                                       (24, 24), interpolation=cv2.INTER_LINEAR),
                            cv2.COLOR_RGB2Lab)
    np.testing.assert_allclose(eye_window(rgb, centre, half), expected, atol=1e-4)
