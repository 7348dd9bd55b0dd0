"""inference-lab: a terminal lab that teaches how LLM inference behaves on real hardware."""

__version__ = "0.1.0"
