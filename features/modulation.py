"""Modulation spectrum: how fast the energy in each acoustic band rises and falls.

Speech energy is modulated mostly at the syllable rate (about 2 to 8 Hz); faster modulations
come from phone transitions and, in synthetic speech, from frame-wise generation and vocoder
artefacts. The share of modulation energy in each modulation-frequency band summarises the
temporal structure of each acoustic band, independently of loudness.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.fft

from features.audio_context import AudioContext
from features.ltas import band_powers
from features.registry import register


@register(name="modulation", modality="audio", cost="cheap")
def modulation(ctx: AudioContext, *,
               acoustic_edges_hz: Sequence[float] = (0.0, 1000.0, 2000.0, 4000.0, 7400.0),
               modulation_edges_hz: Sequence[float] = (0.5, 4.0, 8.0, 16.0, 32.0)
               ) -> dict[str, float]:
    """Share of envelope modulation energy per (acoustic band, modulation band), and modulation
    depth per acoustic band.

    Definition: for each acoustic band a = [``acoustic_edges_hz``[i], [i+1]), the envelope
    e_a(t) = (Σ_{f in a} |X_t(f)|²)^½ over STFT frames (100 frames per second); its modulation
    power spectrum M_a(m) = |DFT_t(w(t) (e_a(t) - ē_a))|², w a Hann window over the whole
    recording; ``fraction__band_{a}__mod_{lo}_{hi}`` = Σ_{lo <= m < hi} M_a(m) /
    Σ_{all modulation bands} M_a(m) (0 when the band is silent); ``depth__band_{a}`` =
    std(e_a) / ē_a (0 when silent). Modulation frequencies are resolved to 1 / duration.

    References
    ----------
    T. Houtgast and H. J. M. Steeneken, "A review of the MTF concept in room acoustics and its
    use for estimating speech intelligibility in auditoria", J. Acoust. Soc. Am. 77(3), 1985.
    B. E. D. Kingsbury, N. Morgan and S. Greenberg, "Robust speech recognition using the
    modulation spectrogram", Speech Communication 25(1-3), 1998. For spoofing detection:
    Z. Wu, X. Xiao, E. S. Chng and H. Li, "Synthetic speech detection using temporal modulation
    feature", Proc. IEEE ICASSP 2013.
    """
    acoustic = np.asarray(acoustic_edges_hz, dtype=float)
    acoustic[-1] = min(acoustic[-1], ctx.sr / 2)
    mod_edges = np.asarray(modulation_edges_hz, dtype=float)
    envelopes = np.sqrt(band_powers(ctx.power(), ctx.frequencies, acoustic))
    mean = envelopes.mean(axis=1, keepdims=True)
    frames = envelopes.shape[1]
    spectrum = np.abs(scipy.fft.rfft((envelopes - mean) * np.hanning(frames), axis=1)) ** 2
    mod_freqs = scipy.fft.rfftfreq(frames, d=ctx.hop_length / ctx.sr)
    energy = band_powers(spectrum.T, mod_freqs, mod_edges).T  # (acoustic bands, mod bands)
    totals = energy.sum(axis=1, keepdims=True)
    fractions = np.divide(energy, totals, out=np.zeros_like(energy), where=totals > 0)
    depth = np.divide(envelopes.std(axis=1), mean[:, 0], out=np.zeros(len(mean)),
                      where=mean[:, 0] > 0)
    out = {}
    for a in range(len(acoustic) - 1):
        for m in range(len(mod_edges) - 1):
            key = f"fraction__band_{a}__mod_{mod_edges[m]:g}_{mod_edges[m + 1]:g}"
            out[key.replace(".", "p")] = float(fractions[a, m])
    out.update({f"depth__band_{a}": float(d) for a, d in enumerate(depth)})
    return out
