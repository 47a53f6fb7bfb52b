"""plsearch: hardware-aware architecture search for compressing decoder LLMs."""

__version__ = "0.1.0"
