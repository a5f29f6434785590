"""How a generated clip behaves past the length of real audio a model was trained on.

Trial-1 of the fine-tuning log trained on 15 s clips padded with silence to 30 s, with the padded
frames in the loss: the model is rewarded for predicting silence after 15 s, and by ear its 30 s
generations "grew quieter over the clip". Evaluated at 15 s that lesson cannot show. A run
trained on padded sequences is therefore also generated at its padded length, and each clip is
split at the real-audio length (`real_s`): these measures compare the part past it with the part
before it, so base and fine-tuned clips can be compared on the very frames that were padding.
"""

from __future__ import annotations

import numpy as np

from .clip import loudness_curve, silence_ratio
from .style import silence_code_share


def past_length_metrics(
    audio: np.ndarray,
    sr: int,
    codes: np.ndarray,
    frame_rate: float,
    real_s: float,
    silence_codes: list[int],
    silence_threshold_dbfs: float,
) -> dict:
    """Measures of a clip longer than `real_s`, split there.

    - `past_silence_code_share` / `within_silence_code_share`: share of codec frames that are the
      codec's digital-silence codes, after / before real_s (the padding a model may have learned);
    - `past_loudness_change_lu`: mean block loudness (0.4 s BS.1770 blocks, dB-domain mean) after
      real_s minus before it: negative = the clip gets quieter where training audio was padding;
    - `past_silence_ratio`: share of 50 ms frames below the silence threshold after real_s.
    """
    split = int(round(real_s * frame_rate))
    cut = int(round(real_s * sr))
    if not (0 < split < codes.shape[1]) or not (0 < cut < len(audio) - int(0.5 * sr)):
        raise ValueError(
            f"past_length_metrics: the clip ({len(audio) / sr:.2f} s) must extend > 0.5 s past real_s = {real_s:g} s"
        )
    t, lufs = loudness_curve(audio, sr)
    return {
        "past_silence_code_share": silence_code_share(codes[:, split:], silence_codes),
        "within_silence_code_share": silence_code_share(codes[:, :split], silence_codes),
        "past_loudness_change_lu": float(lufs[t >= real_s].mean() - lufs[t < real_s].mean()),
        "past_silence_ratio": silence_ratio(audio[cut:], sr, silence_threshold_dbfs),
    }
