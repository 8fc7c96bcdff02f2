"""CPU milliseconds per call of the compiled code counts against ``cv2.calcHist``, on one core.

    python benchmarks/bench_histograms.py [--images DIR] [--n 20] [--repeats 7]

Which is faster depends on the CPU (on an earlier machine OpenCV's 8-bit histogram was nearly as
fast; on an AMD EPYC with AVX2 it was not), so the choice in ``features/histogram.py`` can be
checked on a new machine with this script. Inputs are those the default preset counts in
512x512 images: the radius-1 LBP map of the luma, the 256 x 256 joint Cb-Cr histogram and
300 x 70 views of the luma like ``blend``'s region rectangles. Each number is the least of
``--repeats`` passes.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402

from bench_features import DEFAULT_IMAGES, cpu_description, jpeg_bytes, ms_per_image  # noqa: E402
from features.context import ImageContext  # noqa: E402
from features.histogram import code_counts, joint_code_counts  # noqa: E402
from features.image_decode import decode_image  # noqa: E402
from features.texture import lbp_code_map  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    paths = sorted(args.images.rglob("*.jpg"))[: args.n]
    if not paths:
        raise SystemExit(f"no JPEG under {args.images}")
    contexts = [ImageContext(decode_image(data)) for data in jpeg_bytes(paths, 512)]
    lbp_maps = [lbp_code_map(ctx, "y", 1, "default") for ctx in contexts]
    chroma = [(ctx.plane_8bit("cb"), ctx.plane_8bit("cr"), ctx.ycrcb8) for ctx in contexts]
    views = [ctx.plane_8bit("y")[100 + k:400, 30 + k:100 + k] for k, ctx in enumerate(contexts)]
    cases = {
        "LBP map 510 x 510": (
            lambda codes: code_counts(codes, 256),
            lambda codes: cv2.calcHist([codes], [0], None, [256], [0, 256]), lbp_maps),
        "joint Cb-Cr 512 x 512": (
            lambda planes: joint_code_counts(planes[0], planes[1], 256, 256),
            lambda planes: cv2.calcHist([planes[2]], [2, 1], None, [256, 256],
                                        [0, 256, 0, 256]), chroma),
        "luma view 300 x 70": (
            lambda view: code_counts(view, 256),
            lambda view: cv2.calcHist([view], [0], None, [256], [0, 256]), views),
    }
    print(f"{len(paths)} images from {args.images}; CPU ms per call, one core, the least of "
          f"{args.repeats} passes\nCPU: {cpu_description()}\n")
    print(f"{'':<24}{'compiled':>10}{'calcHist':>10}")
    for name, (compiled, opencv, items) in cases.items():
        print(f"{name:<24}{ms_per_image(compiled, items, args.repeats):>10.3f}"
              f"{ms_per_image(opencv, items, args.repeats):>10.3f}")


if __name__ == "__main__":
    main()
