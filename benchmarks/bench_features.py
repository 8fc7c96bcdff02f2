"""Milliseconds per image, per family and per preset, on one core, beside the JPEG decode time.

    python benchmarks/bench_features.py [--images DIR] [--n 40] [--presets minimal default full]
                                        [--repeats 3]

Images: JPEGs under --images (default: the shared stylegan140k_small set, 256x256), each also
resized to 512x512 and re-encoded (quality 90) for the 512 column. A family is timed on a fresh
context, so it pays for the conversions it needs (grey, YCbCr, ...); a preset is timed on one
context per image, so shared intermediates are computed once, as in extraction; the rows under
a preset ("within") split its time between its families. Each number is the least of
``--repeats`` passes over the images: other jobs on the machine only ever add time.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from features.context import ImageContext  # noqa: E402
from features.extractor import FeatureExtractor, reuse_freed_memory  # noqa: E402
from features.image_decode import decode_image  # noqa: E402
from features.registry import FeatureConfig, families  # noqa: E402

DEFAULT_IMAGES = Path(os.environ.get("DEEPFAKE_DATA", Path(__file__).resolve().parents[2] /
                                     "shared" / "data")) / "images" / "stylegan140k_small"


VECTOR_EXTENSIONS = ("avx512f", "avx2", "asimd")  # widest first: x86-64 AVX-512, AVX2; Arm NEON


def cpu_description() -> str:
    """The CPU's model and its widest vector extension, for the benchmark's heading: the same
    code runs at different speeds on CPUs with and without AVX-512 (NumPy vectorises some
    float32 functions, log10 among them, only with it), so timings need the machine beside them.
    """
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first CPU's: all are alike
    flags = set(fields.get("flags", fields.get("Features", "")).split())
    widest = next((name for name in VECTOR_EXTENSIONS if name in flags), "below AVX2 or NEON")
    model = fields.get("model name") or platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} logical cores, widest vector extension: {widest}"


def jpeg_bytes(paths, side: int) -> list[bytes]:
    out = []
    for path in paths:
        rgb = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
        if rgb.shape[:2] != (side, side):
            rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_CUBIC)
        out.append(cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def ms_per_image(function, items, repeats: int = 1) -> float:
    """CPU ms per item, the least of ``repeats`` passes over the items: on a shared machine the
    least disturbed pass is the closest to the code's own cost."""
    function(items[0])  # warm caches, lazy imports, cascade loading
    passes = []
    for _ in range(repeats):
        start = time.process_time()
        for item in items:
            function(item)
        passes.append(1000 * (time.process_time() - start) / len(items))
    return min(passes)


def family_shares(config: FeatureConfig, images, repeats: int = 1) -> dict[str, float]:
    """CPU ms per image of each family inside a preset (the least of ``repeats`` passes): one
    context per image, shared by the families in the preset's order, as in extraction (the
    first family to need a conversion or the face box pays for it)."""
    items = config.items()
    least = dict.fromkeys((family.name for family, _ in items), float("inf"))
    for _ in range(repeats):
        totals = dict.fromkeys(least, 0.0)
        for rgb in images:
            context = ImageContext(rgb)
            for family, params in items:
                start = time.process_time()
                family.function(context, **params)
                totals[family.name] += time.process_time() - start
        least = {name: min(least[name], total) for name, total in totals.items()}
    return {name: 1000 * total / len(images) for name, total in least.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--presets", nargs="+", default=["minimal", "default", "full"])
    parser.add_argument("--repeats", type=int, default=3,
                        help="passes over the images per measurement; the least is reported")
    args = parser.parse_args()
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be at least 1, got {args.repeats}")
    cv2.setNumThreads(1)
    reuse_freed_memory()  # as every extraction worker does
    paths = sorted(args.images.rglob("*.jpg"))[: args.n]
    if not paths:
        raise SystemExit(f"no JPEG under {args.images}")
    sizes = {side: jpeg_bytes(paths, side) for side in (256, 512)}
    decoded = {side: [decode_image(b) for b in data] for side, data in sizes.items()}
    print(f"{len(paths)} images from {args.images}; CPU ms per image, one core, the least of "
          f"{args.repeats} passes\nCPU: {cpu_description()}\n")
    print(f"{'':<28}{'256x256':>10}{'512x512':>10}")
    print(f"{'decode (JPEG)':<28}" + "".join(
        f"{ms_per_image(decode_image, sizes[s], args.repeats):>10.2f}" for s in (256, 512)))
    for family in families("image"):
        if family.name == "compression":
            continue
        config = FeatureConfig.from_mapping("image", {family.name: {}})
        extractor = FeatureExtractor(config)
        row = [ms_per_image(lambda rgb: extractor.transform_context(ImageContext(rgb)),
                            decoded[s], args.repeats) for s in (256, 512)]
        print(f"family {family.name:<21}" + "".join(f"{v:>10.2f}" for v in row)
              + f"   ({len(extractor.names)} features)")
    for preset in args.presets:
        extractor = FeatureExtractor(FeatureConfig.from_preset(preset))
        row = [ms_per_image(lambda rgb: extractor.transform_context(ImageContext(rgb)),
                            decoded[s], args.repeats) for s in (256, 512)]
        print(f"preset {preset:<21}" + "".join(f"{v:>10.2f}" for v in row)
              + f"   ({len(extractor.names)} features)")
        shares = {side: family_shares(extractor.config, decoded[side], args.repeats)
                  for side in (256, 512)}
        for name in shares[256]:
            print(f"  within: {name:<19}"
                  + "".join(f"{shares[side][name]:>10.2f}" for side in (256, 512)))


if __name__ == "__main__":
    main()
