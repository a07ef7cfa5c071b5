"""attrs models of Kartra's answers."""

from .results import ActionResult, ChainResult

__all__ = ["ActionResult", "ChainResult"]
