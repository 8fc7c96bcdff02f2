"""Clips (audio-video files): sampled face crops, the audio track, and the ``clip`` family.

A clip row is built from three sources, all described by one clip ``FeatureConfig``:

* **image families** run on the face crop of each of ``n_frames`` frames sampled uniformly over
  the video (``features.video_decode.sample_frames``) and are aggregated over the frames:
  ``<family>__<feature>__frames_mean``, ``__frames_std`` (population) and ``__frames_max``.
  A crop is the largest face of its frame scaled by ``face_margin``
  (``features.face_crop.face_crop``, the crop of the images' ``face_crop`` family: its origin
  snapped to the codec's 8-pixel block grid, its face box passed on to ``blend`` and ``face``);
* **audio families** run on the clip's audio track (``features.audio_decode.decode_audio``);
  a clip without one gets NaN for them and ``clip__has_audio = 0``, which is not an error;
* the **clip family** adds the face-detection rate and temporal statistics.

Which frames and which margin are parameters of the ``clip`` family (``n_frames``,
``face_margin``), so they are part of the configuration, its fingerprint and the model bundle,
even in a configuration that does not list the family (its defaults apply).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from features.audio_context import AudioContext
from features.audio_decode import DEFAULT_SAMPLE_RATE, AudioDecodeError, NoAudioStream, decode_audio
from features.context import ImageContext
from features.face import largest_face
from features.face_crop import face_crop
from features.registry import Family, FeatureConfig, get_family, register
from features.video_decode import sample_frames

FRAME_STATISTICS = ("mean", "std", "max")
TEMPORAL_SIDE = 128    # face crops are resized to this square for the frame-to-frame statistics
LOG_EPS = 1e-2         # keeps log ratios of flat crops finite (grey levels)


class AbsentInput(LookupError):
    """The sample lacks a family's input (a clip without an audio track): its values are NaN
    and no failure is recorded."""


class ClipContext:
    """Sampled frames of a clip, lazily computed face crops, and its audio track.

    Parameters
    ----------
    frames : RGB uint8 arrays (H, W, 3), the sampled frames in time order (at least one).
    audio : the decoded audio track, or None when there is none or it failed to decode.
    audio_error : why an existing audio track could not be decoded, else None.
    """

    def __init__(self, frames: Sequence[np.ndarray], audio: AudioContext | None = None,
                 audio_error: str | None = None):
        if not len(frames):
            raise ValueError("a clip needs at least one frame")
        self.frames = [ImageContext(frame) for frame in frames]
        self.audio = audio
        self.audio_error = audio_error
        self._shared: dict[Any, Any] = {}

    def crops(self, margin: float) -> list[ImageContext]:
        """The face crop of each frame (module docstring), cached per margin."""
        return self.shared(("crops", margin), lambda: [face_crop(f, margin) for f in self.frames])

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Return the cached value for ``key``, computing it once with ``compute()``."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]


def load_clip(path: str, *, n_frames: int, sample_rate: int = DEFAULT_SAMPLE_RATE) -> ClipContext:
    """Decode ``n_frames`` frames and the audio track of a clip.

    Raises ``VideoDecodeError`` when the video cannot be decoded (no row for the clip). A missing
    audio track gives ``audio=None``; an audio track that fails to decode also does, with the
    reason in ``audio_error``, so the video features are kept and the audio families report it.
    """
    frames = sample_frames(path, n_frames)
    try:
        return ClipContext(frames, AudioContext(decode_audio(path, sample_rate=sample_rate),
                                                sample_rate))
    except NoAudioStream:
        return ClipContext(frames)
    except AudioDecodeError as error:
        return ClipContext(frames, audio_error=str(error))


@dataclass(frozen=True)
class _ClipAdapter:
    """A registered family run on a ``ClipContext``: same name and column names."""

    family: Family

    @property
    def name(self) -> str:
        return self.family.name

    def column_names(self, keys: Iterable[str]) -> list[str]:
        return self.family.column_names(keys)


@dataclass(frozen=True)
class FrameFamily(_ClipAdapter):
    """An image family computed on every face crop of a clip and aggregated over the frames."""

    margin: float

    def function(self, ctx: ClipContext, **params: Any) -> dict[str, float]:
        rows = [self.family.function(crop, **params) for crop in ctx.crops(self.margin)]
        names = list(rows[0])
        if any(list(row) != names for row in rows[1:]):
            raise ValueError("returned names that depend on the input")
        values = np.array([list(row.values()) for row in rows], dtype=np.float64)
        table = {"mean": values.mean(axis=0), "std": values.std(axis=0),
                 "max": values.max(axis=0)}
        return {f"{name}__frames_{stat}": float(table[stat][j])
                for j, name in enumerate(names) for stat in FRAME_STATISTICS}


@dataclass(frozen=True)
class TrackFamily(_ClipAdapter):
    """An audio family computed on the audio track of a clip."""

    def function(self, ctx: ClipContext, **params: Any) -> dict[str, float]:
        if ctx.audio is None:
            if ctx.audio_error:
                raise AudioDecodeError(ctx.audio_error)
            raise AbsentInput("the clip has no audio track")
        return self.family.function(ctx.audio, **params)


def clip_params(config: FeatureConfig) -> dict[str, Any]:
    """The ``clip`` family's parameters in ``config`` (its defaults when it is not listed)."""
    return get_family("clip").resolve_params(config.to_mapping().get("clip"))


def clip_items(config: FeatureConfig) -> list[tuple[Any, dict[str, Any]]]:
    """``config.items()`` with image and audio families adapted to a ``ClipContext``."""
    margin = clip_params(config)["face_margin"]
    adapters = {"image": lambda f: FrameFamily(f, margin), "audio": TrackFamily,
                "clip": lambda f: f}
    return [(adapters[family.modality](family), params) for family, params in config.items()]


def temporal_maps(crops: Sequence[ImageContext]) -> tuple[np.ndarray, np.ndarray]:
    """Grey levels of the crops resized to ``TEMPORAL_SIDE`` squares, and their high-pass
    residuals (4-neighbour Laplacian, borders reflected), float32 (frames, side, side) each."""
    size = (TEMPORAL_SIDE, TEMPORAL_SIDE)
    grey = np.stack([cv2.resize(c.gray, size, interpolation=cv2.INTER_AREA) for c in crops])
    residual = np.stack([cv2.Laplacian(g, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT_101)
                         for g in grey])
    return grey, residual


def _check_params(n_frames: int, face_margin: float) -> None:
    if not (isinstance(n_frames, int) and n_frames >= 1) or not face_margin >= 1:
        raise ValueError(f"clip: need an integer n_frames >= 1 and face_margin >= 1, got "
                         f"{n_frames!r}, {face_margin!r}")


def pair_statistics(values: np.ndarray, feature: str) -> dict[str, float]:
    """``{feature}_mean|std|max`` over consecutive frame pairs; 0 with fewer than two frames."""
    if not values.size:
        return {f"{feature}_{stat}": 0.0 for stat in FRAME_STATISTICS}
    return {f"{feature}_mean": float(values.mean()), f"{feature}_std": float(values.std()),
            f"{feature}_max": float(values.max())}


@register(name="clip", modality="clip", cost="cheap")
def clip(ctx: ClipContext, *, n_frames: int = 8, face_margin: float = 1.5) -> dict[str, float]:
    """Audio presence, face-detection rate and frame-to-frame change of the face crops.

    ``n_frames`` (K) is how many frames the loader samples (uniformly, by index); ``face_margin``
    scales the face box into the crop (1.5 leaves room for the ``blend`` family's surrounding
    ring, 1.4 times the box). Features:

    * ``has_audio``: 1 when the clip's audio track was decoded (the audio families have values),
      0 when there is none or it failed to decode (they are NaN);
    * ``face_found_share``: share of sampled frames where the Haar cascade found a face (the
      others use the central fallback square);

    and, over the K - 1 pairs of consecutive sampled frames t, t + 1, their mean, population
    standard deviation and maximum (``_mean``, ``_std``, ``_max``; 0 when K = 1), on the face
    crops' luma Y resized to 128 x 128 (area averaging) — g_t — and its 4-neighbour Laplacian
    residual r_t = L * g_t, with e_t = mean |r_t|:

    * ``residual_energy_change``: |ln((e_{t+1} + 0.01) / (e_t + 0.01))|, the change of the
      crop's high-frequency energy (detail, noise, blur), 0 for equal energies;
    * ``residual_difference``: mean |r_{t+1} - r_t| / (e_t + e_{t+1} + 0.01), in [0, 1): 0 when
      the residual pattern repeats, 1/3 when it doubles in amplitude;
    * ``intensity_difference``: mean |g_{t+1} - g_t| / 255, the motion and lighting change the
      two residual statistics should be read against.

    Face swaps and reenactment synthesise each frame's face separately, so its detail and noise
    vary from frame to frame more than a camera's (temporal incoherence), while the face box
    tracking the head aligns the crops roughly. Frames K apart in a 10 s clip are about
    10 / K seconds apart, so these statistics see flicker of detail level rather than
    frame-rate jitter.

    References
    ----------
    Y. Zheng, J. Bao, D. Chen, M. Zeng, F. Wen, "Exploring Temporal Coherence for More General
    Video Face Forgery Detection", ICCV 2021.
    D. Güera, E. J. Delp, "Deepfake Video Detection Using Recurrent Neural Networks", AVSS 2018.
    J. Fridrich, J. Kodovský, "Rich Models for Steganalysis of Digital Images", IEEE TIFS 7(3),
    2012 (high-pass residuals).
    """
    _check_params(n_frames, face_margin)
    crops = ctx.crops(face_margin)
    grey, residual = temporal_maps(crops)
    energy = np.abs(residual).mean(axis=(1, 2), dtype=np.float64)
    change = np.abs(np.diff(np.log(energy + LOG_EPS)))
    difference = (np.abs(np.diff(residual, axis=0)).mean(axis=(1, 2), dtype=np.float64)
                  / (energy[1:] + energy[:-1] + LOG_EPS))
    motion = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2), dtype=np.float64) / 255.0
    return {
        "has_audio": float(ctx.audio is not None),
        "face_found_share": float(np.mean([not largest_face(f).fallback for f in ctx.frames])),
        **pair_statistics(change, "residual_energy_change"),
        **pair_statistics(difference, "residual_difference"),
        **pair_statistics(motion, "intensity_difference"),
    }
