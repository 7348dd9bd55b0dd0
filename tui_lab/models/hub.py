"""Hub models: download (or find in the local HF cache) a checkpoint, with errors a learner can act on.

Downloads go to the standard Hugging Face cache (``HF_HOME``), shared with every
other tool on the machine; only the files a causal LM needs are fetched.
"""

from __future__ import annotations

from pathlib import Path

from tui_lab.engines.base import ProgressCallback
from tui_lab.errors import GatedModel, LabError, ModelNotFound, OfflineHub

ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja"]


def _token_hint() -> str:
    return "run `hf auth login` or set HF_TOKEN"


def hub_error(repo_id: str, error: BaseException) -> LabError | None:
    """The ``LabError`` for a huggingface_hub / network failure, or None if it is not one of those."""
    from huggingface_hub import errors as hub_errors

    url = f"https://huggingface.co/{repo_id}"
    if isinstance(error, hub_errors.GatedRepoError):
        return GatedModel(
            f"{repo_id} is gated: accept its licence at {url} while logged in,",
            hint=f"then {_token_hint()} with a token of that account.",
        )
    if isinstance(error, hub_errors.RevisionNotFoundError):
        return ModelNotFound(f"{repo_id} has no such revision on the hub; check the revision name")
    if isinstance(error, hub_errors.RepositoryNotFoundError):
        return ModelNotFound(
            f"no model {repo_id!r} on the Hugging Face hub; check the id at {url}",
            hint=f"(if it is private, {_token_hint()}).",
        )
    if isinstance(error, hub_errors.OfflineModeIsEnabled | hub_errors.LocalEntryNotFoundError):
        import os

        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        fix = "unset HF_HUB_OFFLINE" if offline else "connect to the internet"
        return OfflineHub(
            f"cannot reach the Hugging Face hub and {repo_id} is not in the local cache;",
            hint=f"{fix}, or use --model embedded or arch:gemma-3-270m.",
        )
    if isinstance(error, hub_errors.HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            return GatedModel(f"the hub refused access to {repo_id} (HTTP {status});",
                              hint=f"accept its licence at {url} and {_token_hint()}.")
        return OfflineHub(f"the Hugging Face hub failed for {repo_id} (HTTP {status});",
                          hint="try again later, or use --model embedded.")
    if _is_network_error(error):
        return OfflineHub(
            f"cannot reach the Hugging Face hub to fetch {repo_id} ({type(error).__name__});",
            hint="check the connection, or use --model embedded or arch:gemma-3-270m.",
        )
    return None


def _is_network_error(error: BaseException) -> bool:
    # huggingface_hub talks through httpx (or a fork of it, depending on the version); their transport
    # errors (connect, read timeout, ...) all derive from a class named TransportError.
    for cls in type(error).__mro__:
        if cls.__name__ == "TransportError" and cls.__module__.split(".")[0].startswith("httpx"):
            return True
    try:
        import requests

        if isinstance(error, requests.ConnectionError | requests.Timeout):
            return True
    except ImportError:
        pass
    return isinstance(error, ConnectionError | TimeoutError)


def materialize_hub(repo_id: str, progress: ProgressCallback | None = None) -> Path:
    """The local snapshot dir of ``repo_id`` (downloaded if needed; from the HF cache when offline)."""
    from huggingface_hub import snapshot_download

    report = progress or (lambda stage, fraction: None)
    report(f"fetching {repo_id} from the Hugging Face hub", None)
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=ALLOW_PATTERNS))
    except Exception as error:
        mapped = hub_error(repo_id, error)
        if mapped is None:
            raise
        raise mapped from None
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"{repo_id} has no config.json; it is not a transformers checkpoint")
    report(f"{repo_id} ready", 1.0)
    return path


def cached_snapshot(repo_id: str) -> Path | None:
    """The snapshot dir if ``repo_id``'s config is already in the local HF cache, else None (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None
