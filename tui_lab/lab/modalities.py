"""How images, audio and video become tokens: small, pure calculators for lesson 01.

A text model sees token ids. A multimodal model first turns other signals into
a sequence of vectors the language model can attend to, and the length of that
sequence is what costs time and KV-cache memory. These functions do the
arithmetic of each preprocessing recipe; they load no model.

Sources for the presets (numbers from model configs and papers):

- Gemma 3 (Gemma 3 technical report, 2025; HF ``Gemma3Config``): a SigLIP vision
  encoder at 896×896 with 14-px patches (64×64 = 4096 patch vectors), average-
  pooled to 16×16 = 256 "soft tokens" per image (``mm_tokens_per_image: 256``);
  pixels scaled to [-1, 1] (mean 0.5, std 0.5). Non-square images are squashed,
  unless the optional pan-and-scan adds crops (each crop is another 256 tokens).
- LLaVA-1.5 (Liu et al., 2023): CLIP ViT-L/14 at 336×336 → 24×24 = 576 tokens,
  CLIP mean/std.
- ViT-B/16 (Dosovitskiy et al., 2020): 224×224, 16-px patches → 14×14 = 196
  patches plus one class token.
- Qwen2-VL (Wang et al., 2024; HF ``Qwen2VLImageProcessor``): "naive dynamic
  resolution": the image keeps its aspect ratio, both sides are rounded to
  multiples of 28 (14-px patches merged 2×2) within 3136…12,845,056 pixels, and
  each 28×28 area is one token. Video: 2 frames per second by default, and two
  consecutive frames are merged (temporal patch 2).
- Whisper (Radford et al., 2022): 16 kHz audio, 25 ms windows (400 samples)
  every 10 ms (hop 160), 80 log-mel bins, 30-second inputs padded with silence
  → 3000 frames; the encoder's stride-2 convolution halves that to 1500 positions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from tui_lab.errors import InvalidInput
from tui_lab.lab.experiment import Experiment, Params, RunContext
from tui_lab.lab.planned import PlannedRun
from tui_lab.params import Param, check_params

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ImageRecipe:
    """How a vision encoder prepares an image."""

    name: str
    resize: int | None
    """Square side the image is resized to; None = keep aspect ratio (dynamic resolution)."""
    patch: int
    pool: int = 1
    """Patches merged per side into one token (Gemma 3 pools 4×4; Qwen2-VL merges 2×2)."""
    extra_tokens: int = 0
    """Tokens added per image besides the patches (e.g. a ViT class token)."""
    mean: tuple[float, float, float] = HALF
    std: tuple[float, float, float] = HALF
    min_pixels: int = 0
    max_pixels: int = 0
    source: str = ""


IMAGE_RECIPES: dict[str, ImageRecipe] = {
    "gemma3": ImageRecipe("gemma3", 896, 14, pool=4, source="Gemma 3 report; HF Gemma3Config"),
    "llava-1.5": ImageRecipe("llava-1.5", 336, 14, mean=CLIP_MEAN, std=CLIP_STD, source="LLaVA-1.5 paper"),
    "vit-b16": ImageRecipe("vit-b16", 224, 16, extra_tokens=1, source="ViT paper (class token)"),
    "qwen2-vl": ImageRecipe(
        "qwen2-vl", None, 14, pool=2, mean=CLIP_MEAN, std=CLIP_STD, min_pixels=56 * 56, max_pixels=12_845_056,
        source="Qwen2-VL paper; HF Qwen2VLImageProcessor",
    ),
}


@dataclass(frozen=True)
class ImageTokens:
    """An image's way through preprocessing: resized size, patch grid, token count."""

    recipe: str
    width: int
    height: int
    resized_width: int
    resized_height: int
    patch: int
    grid_cols: int
    grid_rows: int
    patches: int
    pool: int
    tokens: int
    pixel_shape: tuple[int, int, int]
    """(channels, height, width) of the tensor the encoder receives."""
    pixel_values_bytes: int
    """Size of that tensor in float32."""
    normalized_examples: dict[int, list[float]]
    """Pixel value 0/128/255 → the per-channel values after scaling to [0, 1] and (x - mean) / std."""
    aspect_kept: bool
    source: str


def _round_to(x: float, factor: int) -> int:
    return max(factor, int(round(x / factor)) * factor)


def dynamic_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Sides rounded to multiples of ``factor``, scaled to keep ``min_pixels ≤ h·w ≤ max_pixels``.

    The aspect ratio is kept (approximately): this is the Qwen2-VL recipe.
    """
    h = _round_to(height, factor)
    w = _round_to(width, factor)
    if max_pixels and h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / scale / factor) * factor)
        w = max(factor, math.floor(width / scale / factor) * factor)
    elif min_pixels and h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * scale / factor) * factor
        w = math.ceil(width * scale / factor) * factor
    return h, w


def image_tokens(width: int, height: int, recipe: str = "gemma3") -> ImageTokens:
    """How many tokens a ``width``×``height`` image becomes under ``recipe``."""
    if recipe not in IMAGE_RECIPES:
        raise InvalidInput(f"unknown image recipe {recipe!r}.", f"Use one of: {', '.join(IMAGE_RECIPES)}.")
    _positive(width=width, height=height)
    r = IMAGE_RECIPES[recipe]
    if r.resize is None:
        rh, rw = dynamic_resize(height, width, r.patch * r.pool, r.min_pixels, r.max_pixels)
    else:
        rh = rw = r.resize
    cols, rows = rw // r.patch, rh // r.patch
    patches = cols * rows
    tokens = (cols // r.pool) * (rows // r.pool) + r.extra_tokens
    examples = {v: [round((v / 255.0 - m) / s, 4) for m, s in zip(r.mean, r.std, strict=True)] for v in (0, 128, 255)}
    return ImageTokens(
        recipe=r.name,
        width=width,
        height=height,
        resized_width=rw,
        resized_height=rh,
        patch=r.patch,
        grid_cols=cols,
        grid_rows=rows,
        patches=patches,
        pool=r.pool,
        tokens=tokens,
        pixel_shape=(3, rh, rw),
        pixel_values_bytes=3 * rh * rw * 4,
        normalized_examples=examples,
        aspect_kept=r.resize is None,
        source=r.source,
    )


@dataclass(frozen=True)
class AudioRecipe:
    """How an audio encoder frames sound."""

    name: str
    sample_rate: int
    window: int
    hop: int
    mel_bins: int
    chunk_s: float
    """Inputs are padded with silence (or cut) to this many seconds."""
    encoder_stride: int
    source: str = ""


AUDIO_RECIPES: dict[str, AudioRecipe] = {
    "whisper": AudioRecipe("whisper", 16_000, 400, 160, 80, 30.0, 2, "Whisper paper; HF WhisperFeatureExtractor"),
    "whisper-large-v3": AudioRecipe("whisper-large-v3", 16_000, 400, 160, 128, 30.0, 2, "HF whisper-large-v3 config"),
}


@dataclass(frozen=True)
class AudioFrames:
    """A clip's way through a spectrogram front end."""

    recipe: str
    duration_s: float
    sample_rate: int
    samples: int
    chunks: int
    padded_samples: int
    silence_s: float
    window: int
    window_ms: float
    hop: int
    hop_ms: float
    mel_bins: int
    frames: int
    """Spectrogram frames over all chunks (one every ``hop`` samples)."""
    feature_shape: tuple[int, int]
    """(mel bins, frames per chunk) of one chunk's input."""
    encoder_positions: int
    """Positions the encoder emits over all chunks (frames / stride)."""
    source: str


def audio_frames(duration_s: float, recipe: str = "whisper") -> AudioFrames:
    """Spectrogram frames (and silence padding) for a clip of ``duration_s`` seconds."""
    if recipe not in AUDIO_RECIPES:
        raise InvalidInput(f"unknown audio recipe {recipe!r}.", f"Use one of: {', '.join(AUDIO_RECIPES)}.")
    _positive(duration_s=duration_s)
    r = AUDIO_RECIPES[recipe]
    samples = int(round(duration_s * r.sample_rate))
    chunk_samples = int(r.chunk_s * r.sample_rate)
    chunks = max(1, math.ceil(samples / chunk_samples))
    padded = chunks * chunk_samples
    # Whisper's STFT yields 1 + n/hop frames and drops the last one: n/hop per chunk.
    frames_per_chunk = chunk_samples // r.hop
    return AudioFrames(
        recipe=r.name,
        duration_s=duration_s,
        sample_rate=r.sample_rate,
        samples=samples,
        chunks=chunks,
        padded_samples=padded,
        silence_s=(padded - samples) / r.sample_rate,
        window=r.window,
        window_ms=1000.0 * r.window / r.sample_rate,
        hop=r.hop,
        hop_ms=1000.0 * r.hop / r.sample_rate,
        mel_bins=r.mel_bins,
        frames=frames_per_chunk * chunks,
        feature_shape=(r.mel_bins, frames_per_chunk),
        encoder_positions=(frames_per_chunk // r.encoder_stride) * chunks,
        source=r.source,
    )


@dataclass(frozen=True)
class VideoTokens:
    """A video's way through frame sampling."""

    duration_s: float
    source_fps: float
    sample_fps: float
    source_frames: int
    sampled_frames: int
    max_frames: int | None
    timestamps_s: list[float] = field(default_factory=list)
    """When each sampled frame was taken (the first few)."""
    temporal_patch: int = 1
    tokens_per_frame: int = 256
    tokens: int = 0


def video_tokens(
    duration_s: float,
    source_fps: float = 30.0,
    sample_fps: float = 1.0,
    tokens_per_frame: int = 256,
    max_frames: int | None = None,
    temporal_patch: int = 1,
) -> VideoTokens:
    """Frames sampled from a video and the tokens they become.

    ``tokens_per_frame`` is what one sampled frame costs as an image (256 for
    Gemma 3); ``temporal_patch`` > 1 merges that many consecutive frames into one
    set of tokens (Qwen2-VL uses 2).
    """
    _positive(duration_s=duration_s, source_fps=source_fps, sample_fps=sample_fps, tokens_per_frame=tokens_per_frame)
    if sample_fps > source_fps:
        raise InvalidInput(f"cannot sample {sample_fps} frames/s from a {source_fps} frames/s video.")
    if temporal_patch < 1:
        raise InvalidInput("temporal_patch must be at least 1.")
    source_frames = int(duration_s * source_fps)
    sampled = max(1, int(duration_s * sample_fps))
    if max_frames is not None:
        if max_frames < 1:
            raise InvalidInput("max_frames must be at least 1.")
        sampled = min(sampled, max_frames)
    step = duration_s / sampled
    groups = math.ceil(sampled / temporal_patch)
    return VideoTokens(
        duration_s=duration_s,
        source_fps=source_fps,
        sample_fps=sampled / duration_s,
        source_frames=source_frames,
        sampled_frames=sampled,
        max_frames=max_frames,
        timestamps_s=[round(i * step, 3) for i in range(min(sampled, 8))],
        temporal_patch=temporal_patch,
        tokens_per_frame=tokens_per_frame,
        tokens=groups * tokens_per_frame,
    )


@dataclass(frozen=True)
class ModalitiesView:
    """The three calculators' answers for one set of parameters (the ``modalities`` experiment)."""

    image: ImageTokens
    audio: AudioFrames
    video: VideoTokens
    text_tokens_equivalent: dict[str, int]
    """Each signal's token count, to compare with a prompt's length."""

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form (export, ``--json``, the views)."""
        return asdict(self)


PARAMS: tuple[Param, ...] = (
    Param("image_width", "int", 1280, "image width, pixels", 1),
    Param("image_height", "int", 720, "image height, pixels", 1),
    Param("image_recipe", "choice", "gemma3", "how the model cuts an image into tokens",
          choices=tuple(IMAGE_RECIPES)),
    Param("audio_seconds", "number", 12.0, "length of the sound clip", 0, above_min=True),
    Param("audio_recipe", "choice", "whisper", "how the model turns sound into frames", choices=tuple(AUDIO_RECIPES)),
    Param("video_seconds", "number", 60.0, "length of the video", 0, above_min=True),
    Param("video_fps", "number", 30.0, "frames per second of the source", 0, above_min=True),
    Param("video_sample_fps", "number", 1.0, "frames per second the model sees", 0, above_min=True),
    Param("video_max_frames", "int", None, "cap on sampled frames (none: no cap)", 1, optional=True),
)
DEFAULT_PARAMS: dict[str, object] = {p.name: p.default for p in PARAMS}


def calculate(params: Mapping[str, object] | None = None) -> ModalitiesView:
    """Run all three calculators on checked ``params`` (defaults for what is left out)."""
    p = check_params("modalities", PARAMS, params)
    image = image_tokens(p["image_width"], p["image_height"], p["image_recipe"])
    audio = audio_frames(p["audio_seconds"], p["audio_recipe"])
    video = video_tokens(
        p["video_seconds"],
        source_fps=p["video_fps"],
        sample_fps=p["video_sample_fps"],
        tokens_per_frame=image.tokens,
        max_frames=p["video_max_frames"],
        temporal_patch=2 if p["image_recipe"] == "qwen2-vl" else 1,
    )
    return ModalitiesView(
        image=image,
        audio=audio,
        video=video,
        text_tokens_equivalent={"image": image.tokens, "audio": audio.encoder_positions, "video": video.tokens},
    )


class Modalities(Experiment):
    """How many tokens an image, a clip or a video becomes (no model needed)."""

    name = "modalities"
    title = "Other modalities"
    description = "How many tokens an image, a sound clip or a video becomes before the model sees it."
    kind = "inspect"
    result_type = ModalitiesView
    needs_engine = False
    params = PARAMS

    def check_together(self, values: Params) -> None:
        """The three calculators must accept the values together (e.g. an image too small for its recipe)."""
        calculate(values)

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """Arithmetic only: no engine works."""
        return []

    def run(self, params: Params, ctx: RunContext) -> ModalitiesView:
        """The three calculators."""
        return calculate(params)


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise InvalidInput(f"{name} must be positive (got {value}).")
