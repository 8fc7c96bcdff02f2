import numpy as np
import pytest

from features.histogram import code_counts, joint_code_counts


@pytest.mark.parametrize("shape", [(5, 4), (6, 4), (1, 7), (0, 3), (3, 5)])
def test_code_counts_by_hand(shape):
    # Long runs of one code (a flat area), the top code 255 and rows whose width is not a
    # multiple of the four interleaved tallies all count exactly.
    codes = np.full(shape, 200, np.uint8)
    if codes.size:
        codes[0, 0] = 3
        codes[-1, -1] = 255
    expected = np.zeros(256)
    expected[[3, 200, 255]] = [1, codes.size - 2, 1] if codes.size else [0, 0, 0]
    np.testing.assert_array_equal(code_counts(codes, 256), expected)
    np.testing.assert_array_equal(code_counts(codes.astype(np.int64), 256), expected)


@pytest.mark.parametrize("dtype, n_codes", [(np.uint8, 256), (np.uint8, 10), (np.uint16, 1021)])
def test_code_counts_match_bincount_on_views(dtype, n_codes):
    rng = np.random.default_rng(0)
    image = rng.integers(0, n_codes, size=(67, 93)).astype(dtype)
    for view in (image, image[5:40, 7:58], image[::2, 1::3], image.T, image[3]):
        expected = np.bincount(view.ravel().astype(np.int64), minlength=n_codes)
        np.testing.assert_array_equal(code_counts(view, n_codes), expected)


def test_code_counts_of_one_code_per_tally():
    # Each of the four tallies sees only one code: their sum must still count every pixel.
    codes = np.tile(np.array([[1, 2, 3, 4]], np.uint8), (3, 2))
    np.testing.assert_array_equal(code_counts(codes, 5), [0, 6, 6, 6, 6])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_code_beyond_the_range_is_an_error_naming_it(dtype):
    codes = np.zeros((3, 6), dtype)
    codes[2, 5] = 11
    with pytest.raises(ValueError, match=r"\[0, 10\), found 0\.\.11"):
        code_counts(codes, 10)


def test_negative_codes_are_an_error():
    with pytest.raises(ValueError, match=r"found -1\.\.0"):
        code_counts(np.array([[0, -1]]), 3)


@pytest.mark.parametrize("n_codes", [-3, 2.5])
def test_invalid_number_of_codes_is_rejected(n_codes):
    with pytest.raises(ValueError, match="number of codes"):
        code_counts(np.zeros((2, 2), np.uint8), n_codes)


def test_joint_counts_of_two_channels_of_an_interleaved_image_by_hand():
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[..., 1] = [[7, 7, 9], [7, 0, 9]]
    pixels[..., 2] = [[200, 200, 3], [200, 3, 3]]
    joint = joint_code_counts(pixels[..., 2], pixels[..., 1], 256, 256)
    assert joint.shape == (256, 256) and joint.sum() == 6
    assert (joint[200, 7], joint[3, 9], joint[3, 0]) == (3, 2, 1)


def test_joint_counts_match_numpy_histogram2d():
    rng = np.random.default_rng(1)
    first = rng.integers(0, 5, size=(40, 31)).astype(np.uint8)
    second = rng.integers(0, 300, size=(40, 31)).astype(np.uint16)
    expected, _, _ = np.histogram2d(first.ravel(), second.ravel(), bins=[5, 300],
                                    range=[[0, 5], [0, 300]])
    np.testing.assert_array_equal(joint_code_counts(first, second, 5, 300), expected)
    np.testing.assert_array_equal(joint_code_counts(first[::3, 2:], second[::3, 2:], 5, 300),
                                  np.histogram2d(first[::3, 2:].ravel(), second[::3, 2:].ravel(),
                                                 bins=[5, 300], range=[[0, 5], [0, 300]])[0])


def test_joint_counts_reject_bad_maps_by_name():
    first = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match=r"differ in shape: \(2, 2\) and \(2, 3\)"):
        joint_code_counts(first, np.zeros((2, 3), np.uint8), 4, 4)
    with pytest.raises(ValueError, match="levels code map must be uint8 or uint16, got float32"):
        joint_code_counts(np.zeros((2, 2), np.float32), first, 4, 4, names=("levels", "codes"))
    second = first.copy()
    second[1, 0] = 4
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\), found 0\.\.4"):
        joint_code_counts(first, second, 4, 4, names=("blocks", "codes"))
