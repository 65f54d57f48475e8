"""lettingo: align LLM-written user profiles with what recommenders need (LettinGo, KDD 2025)."""

__version__ = "0.1.0"
