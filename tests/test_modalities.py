"""Image/audio/video token calculators against values worked out by hand (and the models' own docs)."""

from __future__ import annotations

import pytest

from tests.lab_helpers import validate_params
from tui_lab.errors import InvalidInput
from tui_lab.lab.modalities import DEFAULT_PARAMS, audio_frames, calculate, dynamic_resize, image_tokens, video_tokens


def test_gemma3_image_is_256_tokens_whatever_its_size() -> None:
    # 896 / 14 = 64 patches a side, 64² = 4096 patches, pooled 4×4 → 16² = 256 tokens.
    for w, h in ((896, 896), (4032, 3024), (320, 240)):
        img = image_tokens(w, h, "gemma3")
        assert (img.resized_width, img.resized_height) == (896, 896)
        assert (img.grid_cols, img.grid_rows, img.patches, img.tokens) == (64, 64, 4096, 256)
        assert img.pixel_shape == (3, 896, 896)
        assert img.pixel_values_bytes == 3 * 896 * 896 * 4
        assert not img.aspect_kept


def test_fixed_resolution_encoders() -> None:
    llava = image_tokens(1000, 500, "llava-1.5")
    assert (llava.grid_cols, llava.patches, llava.tokens) == (24, 576, 576)  # 336 / 14 = 24
    vit = image_tokens(640, 480, "vit-b16")
    assert (vit.grid_cols, vit.patches, vit.tokens) == (14, 196, 197)  # 224 / 16 = 14, plus the class token


def test_normalisation_examples() -> None:
    # SigLIP-style: (x/255 - 0.5) / 0.5 maps 0 → -1 and 255 → +1.
    ex = image_tokens(896, 896, "gemma3").normalized_examples
    assert ex[0] == [-1.0, -1.0, -1.0] and ex[255] == [1.0, 1.0, 1.0]
    # CLIP mean/std: red channel of a black pixel = -0.48145466 / 0.26862954.
    clip = image_tokens(336, 336, "llava-1.5").normalized_examples
    assert clip[0][0] == pytest.approx(-1.7923, abs=1e-4)


def test_qwen2_vl_keeps_aspect_ratio() -> None:
    # 1280×720: sides rounded to multiples of 28 → 1288×728 (46×26 units), 46·26 = 1196 tokens.
    img = image_tokens(1280, 720, "qwen2-vl")
    assert (img.resized_width, img.resized_height) == (1288, 728)
    assert (img.grid_cols, img.grid_rows) == (92, 52)
    assert img.patches == 92 * 52 and img.tokens == 1196
    assert img.aspect_kept
    # Tiny images are scaled up to at least 56×56 pixels (4 tokens).
    assert image_tokens(10, 10, "qwen2-vl").tokens == 4
    # Huge ones are scaled down under 12,845,056 pixels (16,384 tokens at most).
    big = image_tokens(8000, 8000, "qwen2-vl")
    assert big.resized_width * big.resized_height <= 12_845_056 and big.tokens <= 16_384
    # 1000 / 28 = 35.7 → 36 units, 2000 / 28 = 71.4 → 71 units.
    assert dynamic_resize(1000, 2000, 28, 3136, 12_845_056) == (1008, 1988)


def test_whisper_30_seconds_is_3000_frames() -> None:
    # 16 kHz, hop 160 samples = 10 ms: 30 s → 480,000 samples → 3000 frames → 1500 encoder positions.
    a = audio_frames(12.0, "whisper")
    assert a.samples == 192_000 and a.padded_samples == 480_000
    assert a.silence_s == pytest.approx(18.0)
    assert (a.chunks, a.frames, a.feature_shape, a.encoder_positions) == (1, 3000, (80, 3000), 1500)
    assert (a.window_ms, a.hop_ms) == (25.0, 10.0)
    long = audio_frames(45.0, "whisper-large-v3")
    assert (long.chunks, long.frames, long.feature_shape, long.silence_s) == (2, 6000, (128, 3000), pytest.approx(15))
    exact = audio_frames(30.0)
    assert exact.chunks == 1 and exact.silence_s == 0


def test_video_sampling() -> None:
    v = video_tokens(60.0, source_fps=30.0, sample_fps=1.0, tokens_per_frame=256)
    assert (v.source_frames, v.sampled_frames, v.tokens) == (1800, 60, 15_360)
    assert v.timestamps_s[:3] == [0.0, 1.0, 2.0]
    capped = video_tokens(60.0, sample_fps=2.0, tokens_per_frame=256, max_frames=32)
    assert capped.sampled_frames == 32 and capped.tokens == 8192
    assert capped.sample_fps == pytest.approx(32 / 60)
    merged = video_tokens(10.0, sample_fps=2.0, tokens_per_frame=100, temporal_patch=2)
    assert (merged.sampled_frames, merged.tokens) == (20, 1000)  # 20 frames in pairs → 10 × 100
    odd = video_tokens(2.5, sample_fps=2.0, tokens_per_frame=10, temporal_patch=2)
    assert (odd.sampled_frames, odd.tokens) == (5, 30)  # the last, unpaired frame still costs a set


def test_calculate_combines_and_uses_image_cost_for_video_frames() -> None:
    view = calculate({"image_recipe": "llava-1.5", "video_seconds": 10, "video_sample_fps": 1})
    assert view.image.tokens == 576
    assert view.video.tokens == 10 * 576
    assert view.text_tokens_equivalent == {"image": 576, "audio": 1500, "video": 5760}
    qwen = calculate({"image_recipe": "qwen2-vl", "image_width": 1280, "image_height": 720, "video_seconds": 4,
                      "video_sample_fps": 2})
    assert qwen.video.temporal_patch == 2 and qwen.video.tokens == 4 * 1196


@pytest.mark.parametrize(
    "params",
    [
        {"image_width": 0},
        {"image_recipe": "dalle"},
        {"audio_seconds": -1},
        {"audio_recipe": "mp3"},
        {"video_sample_fps": 60, "video_fps": 30},
        {"video_max_frames": 0},
        {"image_width": "wide"},
        {"colour": "red"},
    ],
)
def test_bad_parameters_are_user_errors(params: dict) -> None:
    with pytest.raises(InvalidInput):
        calculate(params)


def test_registry_accepts_the_calculator_defaults() -> None:
    merged = validate_params("modalities", {})
    assert {k: merged[k] for k in DEFAULT_PARAMS} == DEFAULT_PARAMS
    with pytest.raises(InvalidInput):
        validate_params("modalities", {"image_width": -5})
