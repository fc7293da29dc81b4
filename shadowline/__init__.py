"""shadowline: LLM-assisted customer support on Kafka, with shadow mode for changing it safely."""

from shadowline.errors import ShadowlineError

__version__ = "0.1.0"
__all__ = ["ShadowlineError", "__version__"]
