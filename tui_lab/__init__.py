"""inference-lab: a terminal lab that teaches how LLM inference behaves on real hardware."""

from tui_lab.torch_extras import hide_unloadable as _hide_unloadable

# Before anything imports transformers or vLLM: PyPI's CUDA builds of torchvision/torchaudio/torchcodec,
# which vLLM's CPU build pulls in, cannot load beside the CPU torch and would break every model load.
_hide_unloadable()

__version__ = "0.1.0"
