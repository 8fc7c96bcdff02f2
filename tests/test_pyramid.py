import numpy as np
import pytest

from features.pyramid import check_levels, parse_pyramid_name, pool_codes, pyramid_names


def brute_force_pyramid(codes, n_codes, levels):
    """Cell histograms by explicit loops over cells, from the definition row * L // H."""
    height, width = codes.shape
    rows, cols = np.arange(height), np.arange(width)
    histograms = []
    for level in levels:
        for row in range(level):
            for col in range(level):
                cell = codes[np.ix_(rows * level // height == row, cols * level // width == col)]
                counts = np.array([(cell == code).sum() for code in range(n_codes)], float)
                histograms.append(counts / counts.sum() if counts.sum() else counts)
    return np.array(histograms)


def test_left_and_right_halves_get_their_own_histograms_at_level_2():
    codes = np.zeros((6, 8), np.uint8)
    codes[:, 4:] = 1  # left half all code 0, right half all code 1

    histograms = pool_codes(codes, 3, levels=(1, 2))

    np.testing.assert_array_equal(histograms[0], [0.5, 0.5, 0.0])  # whole image
    for left_cell in (1, 3):    # cells (0, 0) and (1, 0)
        np.testing.assert_array_equal(histograms[left_cell], [1.0, 0.0, 0.0])
    for right_cell in (2, 4):   # cells (0, 1) and (1, 1)
        np.testing.assert_array_equal(histograms[right_cell], [0.0, 1.0, 0.0])


def test_level_1_is_the_overall_histogram():
    codes = np.random.default_rng(0).integers(0, 7, (37, 53))
    overall = np.bincount(codes.ravel(), minlength=7) / codes.size
    np.testing.assert_allclose(pool_codes(codes, 7, levels=(1, 2, 4))[0], overall)


@pytest.mark.parametrize("shape", [(7, 9), (64, 64), (33, 517), (3, 5)])
@pytest.mark.parametrize("levels", [(1, 2, 4), (1, 3), (2,), (4, 1)])
def test_matches_cell_by_cell_histograms(shape, levels):
    codes = np.random.default_rng(1).integers(0, 5, shape).astype(np.uint8)
    np.testing.assert_allclose(pool_codes(codes, 5, levels),
                               brute_force_pyramid(codes, 5, levels), atol=1e-12)


def test_every_nonempty_cell_sums_to_one_and_empty_cells_are_zero():
    codes = np.ones((2, 2), np.uint8)  # at level 4 only cells (0,0), (0,2), (2,0), (2,2) get pixels
    histograms = pool_codes(codes, 2, levels=(4,))
    occupied = {0, 2, 8, 10}
    for cell, histogram in enumerate(histograms):
        np.testing.assert_array_equal(histogram, [0, 1] if cell in occupied else [0, 0])


def test_empty_code_map_gives_zero_histograms():
    histograms = pool_codes(np.zeros((0, 5), np.uint8), 3, levels=(1, 2))
    np.testing.assert_array_equal(histograms, np.zeros((5, 3)))


def test_out_of_range_code_is_an_error():
    with pytest.raises(ValueError):
        pool_codes(np.array([[0, 3]]), 3, levels=(1,))
    with pytest.raises(ValueError):
        pool_codes(np.array([[0, -1]]), 3, levels=(1, 2))


@pytest.mark.parametrize("levels", [(), (0,), (2, 2), (1.5,)])
def test_invalid_levels_are_rejected(levels):
    with pytest.raises(ValueError):
        check_levels(levels)


def test_names_follow_pool_order():
    names = pyramid_names("y_r1", 10, levels=(1, 2, 4))
    assert len(names) == 10 * (1 + 4 + 16)
    assert names[0] == "y_r1__cell_1x1_0_0__bin_0"
    # Level 2, cell row 1, col 0 is the 1 + 2 = 3rd cell: rows 30..39 of the pooled array.
    assert names[3 * 10 + 7] == "y_r1__cell_2x2_1_0__bin_7"
    assert names[-1] == "y_r1__cell_4x4_3_3__bin_9"


def test_names_round_trip():
    for name in pyramid_names("y_o1_h_pair", 25, levels=(1, 2, 4)):
        prefix, level, row, col, code = parse_pyramid_name(name)
        assert f"{prefix}__cell_{level}x{level}_{row}_{col}__bin_{code}" == name
    assert parse_pyramid_name("y_r1__cell_2x2_1_0__bin_7") == ("y_r1", 2, 1, 0, 7)


@pytest.mark.parametrize("name", ["y_r1__cell_2x3_1_0__bin_7", "y_r1__bin_7",
                                  "cell_1x1_0_0__bin_0"])
def test_parse_rejects_other_names(name):
    with pytest.raises(ValueError):
        parse_pyramid_name(name)


def test_one_level_pool_counts_codes_of_every_row():
    codes = np.array([[0, 1, 1], [2, 2, 2], [1, 0, 0]], np.uint8)  # 3 rows: one left unpaired
    np.testing.assert_allclose(pool_codes(codes, 4, levels=(1,)), [[3 / 9, 3 / 9, 3 / 9, 0]])


def test_out_of_range_uint8_code_is_an_error_at_one_level():
    codes = np.zeros((4, 4), np.uint8)
    codes[3, 1] = 9
    with pytest.raises(ValueError, match=r"\[0, 9\), found 0\.\.9"):
        pool_codes(codes, 9, levels=(1,))


def test_out_of_range_uint8_code_is_an_error_across_levels():
    codes = np.zeros((4, 4), np.uint8)
    codes[2, 3] = 12
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 9\), found 0\.\.12"):
        pool_codes(codes, 9, levels=(1, 2))


def test_more_blocks_than_8_bit_indices_hold_count_by_the_definition():
    # Levels 1 and 20 refine a 60 x 60 map into 400 blocks: a 16-bit block map.
    codes = np.random.default_rng(4).integers(0, 3, size=(60, 60)).astype(np.uint8)
    np.testing.assert_allclose(pool_codes(codes, 3, levels=(1, 20)),
                               brute_force_pyramid(codes, 3, (1, 20)))
