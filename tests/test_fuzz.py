"""Property-based fuzzing of the decoders: random and mutated files give an array or a decode error.

Any other exception type, or a crash of the interpreter, fails. The seeds are valid files made here
(JPEG baseline, progressive and CMYK, PNG 8- and 16-bit, BMP, WebP, TIFF, GIF; WAV PCM and float,
FLAC, Ogg Vorbis); mutations are bit flips, byte overwrites (biased towards the header, where
decoders take their sizes from) and truncations. The decoders run in a child process, so that a
native crash fails the example that caused it instead of killing the test run.
"""
import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from features.image_decode import ImageDecodeError, decode_image

try:
    from features import audio_decode
except ImportError:  # written in parallel; the image fuzzing does not depend on it
    audio_decode = None
needs_audio = pytest.mark.skipif(audio_decode is None, reason="features.audio_decode not present")

# No shrinking: each crash restarts the child (about a second); the failing input is reported as is.
FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate])
HEADER_BYTES = 64
FUZZ_MAX_PIXELS = 1_000_000  # a flipped size field must not make one example decode gigapixels
IMAGE_MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"BM",
               b"RIFF\x00\x01\x00\x00WEBP", b"GIF89a", b"P6\n"]
AUDIO_MAGIC = [b"RIFF\x00\x01\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"ID3", b"\xff\xfb",
               b"\x00\x00\x00\x18ftypmp42"]


def image_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    picture = Image.fromarray(rgb)
    seeds = []
    for image, fmt, options in [
        (picture, "JPEG", {"quality": 90}), (picture, "JPEG", {"progressive": True}),
        (picture.convert("CMYK"), "JPEG", {}), (picture, "PNG", {}),
        (Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "PNG", {}),
        (picture, "BMP", {}), (picture, "WEBP", {"quality": 80}),
        (picture, "TIFF", {"compression": "tiff_lzw"}), (picture.convert("P"), "GIF", {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        seeds.append(buffer.getvalue())
    return seeds


def audio_seeds() -> list[bytes]:
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000)).astype(np.float32)
    seeds = []
    for fmt, subtype, samples in [("WAV", "PCM_16", tone), ("WAV", "FLOAT", tone),
                                  ("FLAC", "PCM_16", np.stack([tone, -tone], axis=1)),
                                  ("OGG", "VORBIS", tone)]:
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, 8000, format=fmt, subtype=subtype)
        seeds.append(buffer.getvalue())
    return seeds


IMAGE_SEEDS, AUDIO_SEEDS = image_seeds(), audio_seeds()


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with some bits flipped, some bytes overwritten, and maybe its end cut off."""
    data = bytearray(draw(st.sampled_from(seeds)))
    positions = st.one_of(st.integers(0, HEADER_BYTES - 1), st.integers(0, len(data) - 1))
    for position, bit in draw(st.lists(st.tuples(positions, st.integers(0, 7)), max_size=8)):
        data[position] ^= 1 << bit
    for position, value in draw(st.lists(st.tuples(positions, st.integers(0, 255)), max_size=4)):
        data[position] = value
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


def magic_then_noise(magics: list[bytes]):
    return st.builds(lambda magic, tail: magic + tail, st.sampled_from(magics),
                     st.binary(max_size=512))


def decode_outcome(kind: str, data: bytes) -> tuple:
    """("array", dtype, shape, all finite) or ("error", type name, an allowed type?, message)."""
    allowed = ImageDecodeError if kind == "image" else audio_decode.AudioDecodeError
    try:
        if kind == "image":
            array = decode_image(data, max_pixels=FUZZ_MAX_PIXELS)
        else:
            array = audio_decode.decode_audio(data, sample_rate=8000)
    except Exception as error:  # noqa: BLE001 - the parent judges the type
        return "error", type(error).__name__, isinstance(error, allowed), str(error)[:300]
    return "array", str(array.dtype), array.shape, bool(np.all(np.isfinite(array)))


SERVER = """
import faulthandler, os, pickle, sys
sys.path[:0] = sys.argv[1:]
channel = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)  # a native library that prints must not corrupt the channel
faulthandler.enable()  # a native crash prints where it happened
from test_fuzz import decode_outcome
while True:
    try:
        request = pickle.load(sys.stdin.buffer)
    except EOFError:
        break
    pickle.dump(decode_outcome(*request), channel)
    channel.flush()
"""


class Sandbox:
    """A child process that decodes on request; a crash there fails one example, not the run."""

    def __init__(self):
        self.start()

    def start(self) -> None:
        here = Path(__file__).resolve().parent
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(here.parent), str(here)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def outcome(self, kind: str, data: bytes) -> tuple:
        try:
            pickle.dump((kind, data), self.process.stdin)
            self.process.stdin.flush()
            return pickle.load(self.process.stdout)
        except (EOFError, BrokenPipeError):
            code = self.process.wait()
            self.start()
            return "crash", code

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


def check(sandbox: Sandbox, kind: str, data: bytes) -> None:
    outcome = sandbox.outcome(kind, data)
    shown = data[:80].hex()
    assert outcome[0] != "crash", f"the {kind} decoder crashed (exit {outcome[1]}) on {shown}..."
    if outcome[0] == "error":
        _, type_name, allowed, message = outcome
        assert allowed, f"{type_name}: {message} (input {shown}...)"
        return
    _, dtype, shape, finite = outcome
    if kind == "image":
        assert dtype == "uint8" and len(shape) == 3 and shape[2] == 3
        assert min(shape[:2]) >= 8 and shape[0] * shape[1] <= FUZZ_MAX_PIXELS
    else:  # decode_audio promises a finite mono signal
        assert dtype == "float32" and len(shape) == 1 and shape[0] > 0 and finite


def test_every_image_seed_decodes():
    # Mutations of a seed only test the decoder if the seed itself is a valid image.
    for seed in IMAGE_SEEDS:
        assert decode_image(seed).shape == (24, 32, 3)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_give_an_image_or_a_decode_error(sandbox, data):
    check(sandbox, "image", data)


@FUZZ
@given(data=magic_then_noise(IMAGE_MAGIC))
def test_a_known_signature_then_noise_gives_an_image_or_a_decode_error(sandbox, data):
    check(sandbox, "image", data)


@FUZZ
@given(data=mutated(IMAGE_SEEDS))
def test_mutated_images_give_an_image_or_a_decode_error(sandbox, data):
    check(sandbox, "image", data)


# --- audio -------------------------------------------------------------------------------------

@needs_audio
def test_every_audio_seed_decodes():
    for seed in AUDIO_SEEDS:
        assert audio_decode.decode_audio(seed, sample_rate=8000).size > 3000


@needs_audio
@FUZZ
@given(data=st.one_of(st.binary(max_size=4096), magic_then_noise(AUDIO_MAGIC)))
def test_random_bytes_give_audio_or_a_decode_error(sandbox, data):
    check(sandbox, "audio", data)


@needs_audio
@FUZZ
@given(data=mutated(AUDIO_SEEDS))
def test_mutated_audio_gives_audio_or_a_decode_error(sandbox, data):
    check(sandbox, "audio", data)
