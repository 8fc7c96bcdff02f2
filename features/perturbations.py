"""Perturbations of decoded samples: the processing a file meets between its maker and a detector.

A detector that is only right on pristine files is not trusted; these functions apply the common
processing steps to a decoded sample so that a model can be scored under them (``pipelines.
evaluate``) and trained on them (augmentation, ``augment_plan``). Every function is pure: a new
array comes out, the input is untouched, and the random ones draw from the ``numpy`` generator they
are given, so a seeded run is reproducible.

Images are (H, W, 3) uint8 RGB arrays:

* ``jpeg(rgb, quality)``: encode with libjpeg at an IJG quality (1-100) and decode again;
* ``resize(rgb, factor)``: scale both sides, with pixel-area averaging when shrinking (no
  aliasing) and bicubic interpolation when enlarging;
* ``blur(rgb, sigma)``: Gaussian low-pass of standard deviation ``sigma`` pixels;
* ``gaussian_noise(rgb, sigma, rng)``: add white Gaussian noise of ``sigma`` grey levels;
* ``mirror(rgb, flip)``: the left-right mirror image when ``flip`` is 1 (unchanged when 0). Faces
  are nearly symmetric and a mirrored face is as real or as fake as the original, so a mirrored
  copy is a new training row for features that record where things are (``layout``);
* ``launder(rgb, factor, quality)``: resize then recompress. Run on both classes, it replaces each
  file's compression history (quantisation tables, block grid, chroma subsampling) by one and the
  same, so a model cannot separate the classes by how they were saved (the data README's leaks).

Audio samples are float32 mono arrays at a rate ``sr``:

* ``resample(y, sr, rate)``: down to ``rate`` and back up with the SoX resampler, which removes the
  band above the intermediate Nyquist frequency, as a low-rate copy of a recording would;
* ``lossy(y, sr, codec, kbps)``: encode with an MP3 or AAC encoder of FFmpeg (PyAV) and decode;
* ``white_noise(y, snr_db, rng)``: add white Gaussian noise at an exact signal-to-noise ratio;
* ``gain(y, db)``: scale the amplitude by ``db`` decibels;
* ``launder_audio(y, sr, rate)``: resample through ``rate`` and quantise to 16 bits, which hides the
  original sample rate (the band edge) and bit depth (the quantisation floor) of both classes.

A *step* is a pair ``(name, strength)`` naming a registered perturbation (``PERTURBATIONS``); the
command-line grid ``jpeg=50,70,90 resize=0.5`` is parsed by ``parse_perturb_grid`` into steps.
"""
from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from features.context import ImageContext

Step = tuple[str, float]

LAUNDER_FACTOR = 0.8
LAUNDER_QUALITY = 90
AUDIO_LAUNDER_RATE = 14000
RESAMPLER_QUALITY = "HQ"
# Encoders tried for each lossy format, best first; FFmpeg builds differ in which they hold.
ENCODERS = {"mp3": ("libmp3lame", "mp3", "mp3_mf"), "aac": ("aac", "libfdk_aac", "aac_mf")}
CONTAINERS = {"mp3": "mp3", "aac": "adts"}
# Encoders prepend up to a few thousand samples of priming (1024 for AAC, 576-1105 for MP3).
MAX_CODEC_DELAY = 4096
AUGMENT_SUFFIX = re.compile(r"#aug(\d+)$")


class PerturbationError(ValueError):
    """A perturbation spec that cannot be used; the message names the bad token or key."""


class CodecUnavailable(PerturbationError):
    """No encoder for a lossy audio format in this FFmpeg build."""


# ---------------------------------------------------------------------------------------------
# Images


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """The baseline JPEG file of ``rgb`` at IJG ``quality`` (libjpeg through OpenCV, 4:2:0)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding at quality {quality} failed")
    return data.tobytes()


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Recompress: encode at ``quality`` and decode, as a re-upload to a website would."""
    bgr = cv2.imdecode(np.frombuffer(encode_jpeg(rgb, quality), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resized_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """(height, width) after scaling by ``factor``, rounded, at least 1 pixel."""
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def resize(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Scale by ``factor``: pixel-area averaging to shrink (anti-aliased), bicubic to enlarge."""
    height, width = resized_shape(rgb.shape, factor)
    if (height, width) == rgb.shape[:2]:
        return rgb.copy()
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, (width, height), interpolation=interpolation)


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels (kernel of OpenCV's default size)."""
    if sigma <= 0:
        return rgb.copy()
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REFLECT_101)


def gaussian_noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add independent N(0, sigma^2) noise (grey levels) to every value; round, clip to 8 bits."""
    noisy = rgb + rng.normal(0.0, sigma, size=rgb.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def mirror(rgb: np.ndarray, flip: int) -> np.ndarray:
    """Left-right mirror when ``flip`` is 1; a copy of ``rgb`` when 0. No resampling or coding."""
    return np.ascontiguousarray(rgb[:, ::-1]) if flip else rgb.copy()


def launder(rgb: np.ndarray, factor: float = LAUNDER_FACTOR,
            quality: int = LAUNDER_QUALITY) -> np.ndarray:
    """Resize by ``factor`` then recompress at ``quality``: one identical pipeline for all files."""
    return jpeg(resize(rgb, factor), quality)


# ---------------------------------------------------------------------------------------------
# Audio


def _match_length(y: np.ndarray, n: int) -> np.ndarray:
    return np.pad(y[:n], (0, max(0, n - y.size))).astype(np.float32)


def resample(y: np.ndarray, sr: int, rate: int) -> np.ndarray:
    """Resample to ``rate`` and back to ``sr`` (SoX 'HQ'), keeping the length."""
    import soxr

    if rate == sr:
        return y.astype(np.float32, copy=True)
    there = soxr.resample(y.astype(np.float32), sr, rate, quality=RESAMPLER_QUALITY)
    return _match_length(soxr.resample(there, rate, sr, quality=RESAMPLER_QUALITY), y.size)


def available_encoder(fmt: str) -> str | None:
    """The first encoder of ``ENCODERS[fmt]`` this FFmpeg build has, or None."""
    import av

    return next((c for c in ENCODERS[fmt] if c in av.codecs_available), None)


def encode_audio(y: np.ndarray, sr: int, fmt: str, kbps: int) -> bytes:
    """The ``fmt`` ('mp3' or 'aac') file of the mono signal ``y`` at ``kbps`` kbit/s."""
    import av

    encoder = available_encoder(fmt)
    if encoder is None:
        raise CodecUnavailable(f"no {fmt} encoder in this FFmpeg build (tried "
                               f"{', '.join(ENCODERS[fmt])})")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=CONTAINERS[fmt]) as container:
        stream = container.add_stream(encoder, rate=sr, layout="mono")
        stream.bit_rate = int(kbps) * 1000
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y, np.float32)[None, :],
                                           format="flt", layout="mono")
        frame.sample_rate = sr
        # The encoder's sample format (planar float, or 16-bit) and frame size; the resampler
        # also cuts the signal into frames of the size the encoder expects.
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono",
                                      rate=sr, frame_size=stream.codec_context.frame_size or None)
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def decode_mono(data: bytes) -> np.ndarray:
    """Decode the first audio stream of ``data`` to float32 mono at its own rate."""
    import av

    with av.open(io.BytesIO(data)) as container:
        resampler = av.AudioResampler(format="fltp", layout="mono")
        blocks = [f.to_ndarray()[0] for frame in container.decode(audio=0)
                  for f in resampler.resample(frame)]
        blocks += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def codec_delay(decoded: np.ndarray, original: np.ndarray) -> int:
    """The priming delay: the lag in [0, MAX_CODEC_DELAY] that best aligns decoded to original."""
    import scipy.signal

    if not np.any(original) or decoded.size < original.size:
        return 0
    head = decoded[:original.size + MAX_CODEC_DELAY]
    correlation = scipy.signal.correlate(head, original, mode="full", method="fft")
    lags = np.arange(-original.size + 1, head.size)
    allowed = (lags >= 0) & (lags <= MAX_CODEC_DELAY)
    return int(lags[allowed][np.argmax(correlation[allowed])])


def lossy(y: np.ndarray, sr: int, fmt: str, kbps: int) -> np.ndarray:
    """Encode to ``fmt`` at ``kbps`` and decode, aligned to the input (priming removed), same length.

    Raises ``CodecUnavailable`` when FFmpeg has no encoder for ``fmt``.
    """
    decoded = decode_mono(encode_audio(y, sr, fmt, kbps))
    return _match_length(decoded[codec_delay(decoded, y):], y.size)


def white_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise scaled so that 10 log10(P_signal / P_noise) is exactly ``snr_db``.

    A silent signal has no defined SNR and is returned unchanged.
    """
    signal_power = float(np.mean(np.square(y, dtype=np.float64)))
    if signal_power == 0.0:
        return y.astype(np.float32, copy=True)
    noise = rng.standard_normal(y.size)
    noise *= math.sqrt(signal_power / 10 ** (snr_db / 10) / np.mean(noise ** 2))
    return (y + noise).astype(np.float32)


def gain(y: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels of amplitude (x 10^(db/20)); no clipping (the signal is float)."""
    return (y.astype(np.float64) * 10 ** (db / 20)).astype(np.float32)


def quantise_16bit(y: np.ndarray) -> np.ndarray:
    """Round to the 16-bit PCM grid (as writing a PCM_16 file would), clipping to [-1, 1)."""
    return (np.clip(np.rint(y * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)


def launder_audio(y: np.ndarray, sr: int, rate: int = AUDIO_LAUNDER_RATE) -> np.ndarray:
    """Resample through ``rate`` and quantise to 16 bits: one identical pipeline for all files."""
    return quantise_16bit(resample(y, sr, rate))


# ---------------------------------------------------------------------------------------------
# Registry and specs


@dataclass(frozen=True)
class Perturbation:
    """A named perturbation, its strength's meaning and valid range, and how to apply it.

    ``apply(sample, strength, rng, sr)`` returns the perturbed sample (``sr`` is None for images).
    """

    name: str
    modality: str
    strength: str           # what the number means, for messages and plots
    low: float
    high: float
    apply: Callable[[np.ndarray, float, np.random.Generator, int | None], np.ndarray]
    integer: bool = False
    default: float | None = None  # strength used when the grid names it without a value
    stronger_when: str = "higher"  # the direction in which the damage grows

    def check(self, value: float, where: str) -> float:
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise PerturbationError(f"{where}: {self.name} {self.strength} must be in "
                                    f"[{self.low:g}, {self.high:g}], got {value:g}")
        if self.integer and value != int(value):
            raise PerturbationError(f"{where}: {self.name} {self.strength} must be an integer, "
                                    f"got {value:g}")
        return float(value)


PERTURBATIONS: dict[str, dict[str, Perturbation]] = {"image": {}, "audio": {}}


def _add(perturbation: Perturbation) -> None:
    PERTURBATIONS[perturbation.modality][perturbation.name] = perturbation


_add(Perturbation("jpeg", "image", "JPEG quality", 1, 100, integer=True, stronger_when="lower",
                  apply=lambda x, s, rng, sr: jpeg(x, int(s))))
_add(Perturbation("resize", "image", "scale factor", 0.05, 4.0, stronger_when="further from 1",
                  apply=lambda x, s, rng, sr: resize(x, s)))
_add(Perturbation("blur", "image", "Gaussian sigma (pixels)", 0.0, 20.0,
                  apply=lambda x, s, rng, sr: blur(x, s)))
_add(Perturbation("noise", "image", "noise sigma (grey levels)", 0.0, 128.0,
                  apply=lambda x, s, rng, sr: gaussian_noise(x, s, rng)))
_add(Perturbation("mirror", "image", "flip (1 = mirrored, 0 = as is)", 0, 1, integer=True,
                  default=1, apply=lambda x, s, rng, sr: mirror(x, int(s))))
_add(Perturbation("launder", "image", f"resize factor (then JPEG quality {LAUNDER_QUALITY})",
                  0.05, 4.0, default=LAUNDER_FACTOR, stronger_when="further from 1",
                  apply=lambda x, s, rng, sr: launder(x, s, LAUNDER_QUALITY)))
_add(Perturbation("resample", "audio", "intermediate sample rate (Hz)", 1000, 192000,
                  integer=True, stronger_when="lower",
                  apply=lambda x, s, rng, sr: resample(x, sr, int(s))))
_add(Perturbation("mp3", "audio", "MP3 bit rate (kbit/s)", 8, 320, integer=True,
                  stronger_when="lower", apply=lambda x, s, rng, sr: lossy(x, sr, "mp3", int(s))))
_add(Perturbation("aac", "audio", "AAC bit rate (kbit/s)", 8, 512, integer=True,
                  stronger_when="lower", apply=lambda x, s, rng, sr: lossy(x, sr, "aac", int(s))))
_add(Perturbation("snr", "audio", "white-noise SNR (dB)", -20.0, 100.0, stronger_when="lower",
                  apply=lambda x, s, rng, sr: white_noise(x, s, rng)))
_add(Perturbation("gain", "audio", "gain (dB)", -60.0, 60.0, stronger_when="further from 0",
                  apply=lambda x, s, rng, sr: gain(x, s)))
_add(Perturbation("launder", "audio", "intermediate sample rate (Hz), then 16-bit", 1000, 192000,
                  integer=True, default=AUDIO_LAUNDER_RATE, stronger_when="lower",
                  apply=lambda x, s, rng, sr: launder_audio(x, sr, int(s))))


def get_perturbation(name: str, modality: str, where: str | None = None) -> Perturbation:
    known = PERTURBATIONS[modality]
    if name not in known:
        raise PerturbationError(f"{where or name!r}: unknown {modality} perturbation {name!r}; "
                                f"known: {', '.join(sorted(known))}")
    return known[name]


def unavailable_reason(name: str) -> str | None:
    """Why the perturbation ``name`` cannot run here (a missing codec), or None if it can."""
    if name in ENCODERS and available_encoder(name) is None:
        return f"{name}: no encoder in this FFmpeg build (tried {', '.join(ENCODERS[name])})"
    return None


def parse_perturb_grid(tokens: Iterable[str], modality: str = "image") -> list[Step]:
    """Parse ``["jpeg=50,70,90", "blur=1,2", "launder"]`` into ``[("jpeg", 50.0), ...]``.

    Each token is ``name=value[,value...]``, or a bare ``name`` for a perturbation with a default
    strength; a token holding spaces is split first (a config file may give one string). The
    order is kept; errors name the bad token.
    """
    steps: list[Step] = []
    for token in (t for item in tokens for t in str(item).split()):
        name, _, values = token.partition("=")
        perturbation = get_perturbation(name.strip(), modality, where=token)
        if not values.strip():
            if perturbation.default is None:
                raise PerturbationError(f"{token!r}: {name} needs values, e.g. {name}=1,2")
            steps.append((perturbation.name, float(perturbation.default)))
            continue
        seen = set()
        for text in values.split(","):
            try:
                value = float(text)
            except ValueError:
                raise PerturbationError(f"{token!r}: {text!r} is not a number") from None
            value = perturbation.check(value, repr(token))
            if value in seen:
                raise PerturbationError(f"{token!r}: value {text} is repeated")
            seen.add(value)
            steps.append((perturbation.name, value))
    return steps


def step_label(step: Step) -> str:
    """``jpeg=50``: how a step is written in grids, tables and file names."""
    return f"{step[0]}={step[1]:g}"


def apply(step: Step, sample: np.ndarray, rng: np.random.Generator, *,
          sr: int | None = None, modality: str = "image") -> np.ndarray:
    """Apply one step ``(name, strength)`` to an RGB image or (with ``sr``) an audio signal."""
    name, strength = step
    perturbation = get_perturbation(name, modality)
    return perturbation.apply(sample, perturbation.check(strength, step_label(step)), rng, sr)


def apply_steps(steps: Sequence[Step], sample: np.ndarray, rng: np.random.Generator, *,
                sr: int | None = None, modality: str = "image") -> np.ndarray:
    """Apply the steps in order (e.g. resize, then JPEG)."""
    for step in steps:
        sample = apply(step, sample, rng, sr=sr, modality=modality)
    return sample


def perturb_context(context: Any, steps: Sequence[Step], rng: np.random.Generator) -> Any:
    """A fresh context (image or audio) holding the perturbed sample of ``context``."""
    if isinstance(context, ImageContext):
        return ImageContext(apply_steps(steps, context.rgb, rng))
    from features.audio_context import AudioContext

    return AudioContext(apply_steps(steps, context.y, rng, sr=context.sr, modality="audio"),
                        context.sr)


def sample_rng(seed: int, key: str) -> np.random.Generator:
    """A generator determined by ``seed`` and a sample's name, whatever the order of processing."""
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([int(seed), digest])


# ---------------------------------------------------------------------------------------------
# Augmentation at fit time


@dataclass(frozen=True)
class AugmentSpec:
    """Random perturbations added to the training set as extra rows.

    From a mapping (the ``augment:`` section of a config file)::

        copies: 2            # augmented rows per source file
        steps: 1             # perturbations chained in each copy (drawn without replacement)
        perturbations:       # name: [lowest, highest] strength, drawn uniformly; listed order
          resize: [0.5, 1.0] #   is the processing order when several are chained
          jpeg: [60, 95]
          blur: [0.0, 1.5]
    """

    modality: str
    copies: int
    steps: int
    ranges: tuple[tuple[str, float, float], ...]

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], modality: str = "image") -> "AugmentSpec":
        unknown = sorted(set(mapping) - {"copies", "steps", "perturbations"})
        if unknown:
            raise PerturbationError(f"augment: unknown key(s) {unknown}; known: copies, steps, "
                                    "perturbations")
        copies, steps = mapping.get("copies", 1), mapping.get("steps", 1)
        for key, value in (("copies", copies), ("steps", steps)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PerturbationError(f"augment: {key} must be an integer >= 1, got {value!r}")
        chosen = mapping.get("perturbations")
        if not isinstance(chosen, Mapping) or not chosen:
            raise PerturbationError("augment: 'perturbations' must map names to [low, high]")
        ranges = []
        for name, bounds in chosen.items():
            where = f"augment: perturbations: {name}"
            perturbation = get_perturbation(name, modality, where=where)
            if not (isinstance(bounds, Sequence) and len(bounds) == 2):
                raise PerturbationError(f"{where}: expected [low, high], got {bounds!r}")
            low, high = (perturbation.check(float(b), where) for b in bounds)
            if low > high:
                raise PerturbationError(f"{where}: low {low:g} is above high {high:g}")
            ranges.append((name, low, high))
        if steps > len(ranges):
            raise PerturbationError(f"augment: steps = {steps} but only {len(ranges)} "
                                    "perturbation(s) to chain")
        return cls(modality, copies, steps, tuple(ranges))


@dataclass(frozen=True)
class AugmentedRow:
    name: str                  # ``source#augK``
    source: str                # the file it is made from
    steps: tuple[Step, ...]
    seed: int                  # seeds the random steps (noise) of this row


def augmented_name(source: str, copy: int) -> str:
    return f"{source}#aug{copy}"


def source_name(name: str) -> str:
    """The source file of a row: ``a.jpg#aug2`` -> ``a.jpg``; an original row is its own source."""
    return AUGMENT_SUFFIX.sub("", name)


def augment_plan(names: Sequence[str], spec: AugmentSpec, seed: int = 0) -> list[AugmentedRow]:
    """The extra rows to extract: ``spec.copies`` per name, each with its own random steps.

    A row's steps and seed depend only on ``seed`` and its own name, so the plan of one file does
    not change when files are added, removed or processed in another order.
    """
    rows = []
    for source in names:
        for copy in range(1, spec.copies + 1):
            name = augmented_name(source, copy)
            rng = sample_rng(seed, name)
            picked = np.sort(rng.choice(len(spec.ranges), size=spec.steps, replace=False))
            steps = tuple(_draw(spec.ranges[i], spec.modality, rng) for i in picked)
            rows.append(AugmentedRow(name, source, steps, int(rng.integers(2 ** 63))))
    return rows


def _draw(bounds: tuple[str, float, float], modality: str, rng: np.random.Generator) -> Step:
    name, low, high = bounds
    if get_perturbation(name, modality).integer:
        return name, float(rng.integers(int(low), int(high) + 1))
    return name, float(rng.uniform(low, high))
