"""Model specs, the materialization cache (atomic, self-healing), hub errors and model shapes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tui_lab.errors import GatedModel, LabError, ModelNotFound, OfflineHub
from tui_lab.metrics import kv_bytes_per_sequence
from tui_lab.models import KNOWN_MODELS, cache_status, default_cache_dir, materialize, model_shape, resolve
from tui_lab.models import cache as cache_mod
from tui_lab.models.arch import ARCH_MODELS, arch_config_dict
from tui_lab.models.shape import count_params

# -- resolve ---------------------------------------------------------------------------------


def test_resolve_default_is_embedded() -> None:
    for spec in (None, "", "embedded"):
        s = resolve(spec)
        assert s.kind == "embedded" and s.name == "embedded" and s.text_is_meaningful


def test_resolve_hub_ids() -> None:
    s = resolve("google/gemma-3-270m-it")
    assert (s.kind, s.name, s.gated) == ("hub", "google/gemma-3-270m-it", True)
    s = resolve("Qwen/Qwen2.5-0.5B")
    assert s.kind == "hub" and s.text_is_meaningful and "huggingface.co/Qwen/Qwen2.5-0.5B" in s.source


def test_resolve_arch_models() -> None:
    s = resolve("arch:gemma-3-270m")
    assert s.kind == "arch" and s.arch_name == "gemma-3-270m" and not s.text_is_meaningful
    assert resolve("arch:NEMOTRON-nano-9b-v2").arch_name == "nemotron-nano-9b-v2"
    with pytest.raises(ModelNotFound, match="arch:gemma-3-270m"):
        resolve("arch:gpt-5")


def test_resolve_local_dir(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    s = resolve(str(tmp_path))
    assert s.kind == "local" and s.path == tmp_path.resolve()
    assert materialize(str(tmp_path)) == tmp_path.resolve()


@pytest.mark.parametrize("bad, match", [
    ("embeded", "unknown model 'embeded'"),
    ("/no/such/dir", "no checkpoint directory"),
    ("./missing", "no checkpoint directory"),
])
def test_resolve_errors_are_one_line(bad: str, match: str) -> None:
    with pytest.raises(ModelNotFound, match=match) as info:
        resolve(bad)
    assert "\n" not in str(info.value)


def test_resolve_dir_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no config.json"):
        resolve(str(tmp_path))


def test_known_models_cover_the_issue() -> None:
    for name in ("embedded", "google/gemma-3-270m-it", "nvidia/NVIDIA-Nemotron-Nano-9B-v2",
                 "arch:gemma-3-270m", "arch:nemotron-nano-9b-v2"):
        assert name in KNOWN_MODELS


def test_cache_status_lists_every_known_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = cache_status(tmp_path)
    assert [s.spec.name for s in status] == list(KNOWN_MODELS)
    embedded = status[0]
    assert not embedded.cached and "first use" in embedded.note
    nemotron = next(s for s in status if s.spec.name == "arch:nemotron-nano-9b-v2")
    assert "B params" in nemotron.note


# -- cache dir and atomic builds ------------------------------------------------------------------


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_LAB_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert default_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("INFERENCE_LAB_CACHE")
    assert default_cache_dir().name == "inference-lab"


def _writer(calls: list[int]):  # noqa: ANN202
    def build(tmp: Path) -> dict:
        calls.append(1)
        (tmp / "config.json").write_text('{"a": 1}')
        (tmp / "weights.bin").write_bytes(b"x" * 1000)
        return {"source": "test"}
    return build


def test_build_entry_builds_once(tmp_path: Path) -> None:
    calls: list[int] = []
    path = cache_mod.build_entry("m", _writer(calls), tmp_path, "v1")
    assert path == tmp_path / "models" / "m"
    manifest = json.loads((path / cache_mod.MANIFEST).read_text())
    assert manifest["files"] == {"config.json": 8, "weights.bin": 1000}
    assert manifest["source_version"] == "v1"
    cache_mod.build_entry("m", _writer(calls), tmp_path, "v1")
    assert len(calls) == 1
    cache_mod.build_entry("m", _writer(calls), tmp_path, "v2")  # a new source version rebuilds
    assert len(calls) == 2


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_interrupted_build_leaves_no_half_cache(tmp_path: Path, exc: BaseException) -> None:
    def build(tmp: Path) -> dict:
        (tmp / "weights.bin").write_bytes(b"half")
        raise exc

    with pytest.raises(type(exc)):
        cache_mod.build_entry("m", build, tmp_path)
    models = tmp_path / "models"
    assert not (models / "m").exists()
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []


def test_stale_temp_dir_of_a_dead_build_is_removed(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    # pid 2**22 + 1 is above Linux's pid_max default, so no live process has it
    stale = models / f".tmp-m-{2**22 + 1}-deadbeef"
    stale.mkdir()
    (stale / "weights.bin").write_bytes(b"half")
    cache_mod.build_entry("m", _writer([]), tmp_path)
    assert not stale.exists()


def _fill_disk(tmp: Path) -> dict:
    """Write the way a build does onto a device that is always full: the kernel's own ENOSPC."""
    with open("/dev/full", "wb") as fh:
        fh.write(b"x" * 1_000_000)
        fh.flush()
    return {}


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_full_disk_is_one_line_with_the_room_needed(tmp_path: Path) -> None:
    with pytest.raises(cache_mod.CacheUnwritable) as info:
        cache_mod.build_entry("m", _fill_disk, tmp_path, need_bytes=830_000_000)
    text = str(info.value)
    assert "\n" not in text and f"model cache at {tmp_path} is full" in text
    assert "about 830 MB" in text and "--cache-dir" in text and "INFERENCE_LAB_CACHE" in text
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []


def test_cache_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    with pytest.raises(cache_mod.CacheUnwritable) as info:
        cache_mod.build_entry("m", _writer([]), blocker, need_bytes=35_000_000)
    text = str(info.value)
    assert f"cannot write the model cache at {blocker}" in text and "about 35 MB free" in text
    assert isinstance(info.value, LabError) and "\n" not in text


def test_read_only_cache_is_one_line(tmp_path: Path) -> None:
    import errno

    def read_only(tmp: Path) -> dict:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp / "config.json"))

    with pytest.raises(cache_mod.CacheUnwritable, match=r"cannot write the model cache at .*Read-only file system"):
        cache_mod.build_entry("m", read_only, tmp_path, need_bytes=2_500_000_000)
    with pytest.raises(cache_mod.CacheUnwritable, match=r"writable directory with about 2\.5 GB free"):
        cache_mod.build_entry("m", read_only, tmp_path, need_bytes=2_500_000_000)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_gguf_assembly_on_a_full_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GGUF assembler writes ~250 MB first: a full disk there says so, with what the build needs."""
    from tui_lab.models import embedded

    class FullDiskGguf:
        MODEL_NAME = "model.gguf"

        @staticmethod
        def assemble(target: Path, overwrite: bool = False) -> Path:
            _fill_disk(Path(target).parent)
            return Path(target)

    monkeypatch.setattr(embedded, "_gguf_module", lambda: FullDiskGguf)
    with pytest.raises(cache_mod.CacheUnwritable) as info:
        embedded.tokenizer_dir(tmp_path)
    assert "is full" in str(info.value) and "about 287 MB" in str(info.value)


def test_cli_with_an_unwritable_cache_prints_one_line_and_exits_2(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from tui_lab.cli import main

    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    code = main(["run", "--model", "arch:gemma-3-270m", "--cache-dir", str(blocker), "--max-tokens", "1",
                 "--device", "cpu", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("inference-lab: error: cannot write the model cache at ")
    assert "--cache-dir" in err[0]


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest"])
def test_damaged_cache_is_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    calls: list[int] = []
    path = cache_mod.build_entry("m", _writer(calls), tmp_path)
    if damage == "truncate":
        (path / "weights.bin").write_bytes(b"x" * 10)
    elif damage == "delete":
        (path / "config.json").unlink()
    else:
        (path / cache_mod.MANIFEST).write_text("{not json")
    assert not cache_mod.is_valid(path)
    again = cache_mod.build_entry("m", _writer(calls), tmp_path)
    assert again == path and len(calls) == 2 and cache_mod.is_valid(path)
    assert (path / "weights.bin").stat().st_size == 1000


# -- hub errors ----------------------------------------------------------------------------------


def test_offline_hub_gives_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineHub, match="not in the local cache") as info:
        materialize("someone/not-cached-model-xyz")
    assert "\n" not in str(info.value) and "HF_HUB_OFFLINE" in str(info.value)


def _response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "https://huggingface.co/api/models/x"))


@pytest.mark.parametrize("make, expected, text", [
    (lambda e: e.GatedRepoError("gated", response=_response(403)), GatedModel, "accept its licence"),
    (lambda e: e.RepositoryNotFoundError("nope", response=_response(404)), ModelNotFound, "no model"),
    (lambda e: e.LocalEntryNotFoundError("not cached"), OfflineHub, "cannot reach"),
    (lambda e: httpx.ConnectError("dns"), OfflineHub, "cannot reach"),
])
def test_hub_errors_map_to_lab_errors(monkeypatch: pytest.MonkeyPatch, make, expected, text) -> None:  # noqa: ANN001
    import huggingface_hub
    import huggingface_hub.errors as hub_errors

    def fail(*args: object, **kwargs: object) -> None:
        raise make(hub_errors)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(expected, match=text) as info:
        materialize("google/gemma-3-270m-it")
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, LabError)
    if expected is GatedModel:
        assert "https://huggingface.co/google/gemma-3-270m-it" in message and "hf auth login" in message
        assert "HF_TOKEN" in message


# -- shapes --------------------------------------------------------------------------------------


def test_gemma_shape_matches_the_real_model() -> None:
    shape = model_shape(arch_config_dict("gemma-3-270m"))
    assert 267_000_000 < shape.params < 269_000_000  # 268.1M (the saved bf16 file is 536 MB)
    assert (shape.layers, shape.kv_heads, shape.head_dim) == (18, 1, 256)
    assert (shape.sliding_layers, shape.sliding_window) == (15, 512)
    # 3 full layers × 1000 + 15 sliding layers × 512 positions, K and V, 256 dims, bf16
    assert kv_bytes_per_sequence(shape, 1000) == (3 * 1000 + 15 * 512) * 2 * 256 * 2


def test_nemotron_shape_counts_only_attention_layers_for_kv() -> None:
    config = arch_config_dict("nemotron-nano-9b-v2")
    shape = model_shape(config)
    assert 8_800_000_000 < shape.params < 9_000_000_000  # published: 8.89B
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.sliding_layers) == (4, 8, 128, 0)
    assert config["hybrid_override_pattern"].count("M") == 27


def test_llama_shape() -> None:
    assert 8_000_000_000 < count_params(arch_config_dict("llama-3-8b")) < 8_060_000_000  # 8.03B


def test_every_arch_config_loads_in_transformers() -> None:
    from transformers import AutoConfig

    for name in ARCH_MODELS:
        cfg = dict(arch_config_dict(name))
        model_type = cfg.pop("model_type")
        config = AutoConfig.for_model(model_type, **cfg)
        assert model_shape(config).params == model_shape(arch_config_dict(name)).params


# -- the real embedded checkpoint --------------------------------------------------------------------


@pytest.mark.real_model
def test_embedded_checkpoint_is_plain_bf16_gemma(embedded_checkpoint: Path) -> None:
    config = json.loads((embedded_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"] and config["model_type"] == "gemma3_text"
    assert config["dtype"] == "bfloat16" and "quantization_config" not in config
    assert cache_mod.is_valid(embedded_checkpoint)
    for f in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (embedded_checkpoint / f).is_file()
    assert os.stat(embedded_checkpoint / "model.safetensors").st_size > 500_000_000


@pytest.mark.real_model
def test_embedded_tokenizer_adds_bos(embedded_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_checkpoint)
    assert tok("The future of AI is").input_ids == [2, 818, 3402, 529, 12498, 563]


@pytest.mark.real_model
def test_arch_nemotron_tokenizer_fits_its_vocabulary(embedded_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    path = materialize("arch:nemotron-nano-9b-v2", cache_dir=embedded_checkpoint.parent.parent)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "nemotron_h" and config["vocab_size"] == 131072
    tok = AutoTokenizer.from_pretrained(path)
    text = "Grüße, 世界! The future of AI is 🤖"
    ids = tok(text).input_ids
    assert max(ids) < 131072
    assert tok.decode(ids, skip_special_tokens=True) == text


@pytest.mark.real_model
def test_cached_embedded_reports_progress_and_is_instant(embedded_checkpoint: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache hit builds nothing: no build is started and the only stage is the hit itself."""
    def no_build(*args: object, **kwargs: object) -> Path:
        raise AssertionError("a cached model must not be built again")

    monkeypatch.setattr(cache_mod, "build_entry", no_build)
    calls: list[tuple[str, float | None]] = []
    path = materialize("embedded", lambda stage, fraction: calls.append((stage, fraction)),
                       cache_dir=embedded_checkpoint.parent.parent)
    assert path == embedded_checkpoint
    assert calls == [("embedded model cached", 1.0)]
