"""Complexity: analytic params / MACs / activations from a spec (no torch), and the traced
cross-check on a built model (torch and fvcore, imported only when called)."""

from scaling.cost.complexity import UNIT, Complexity, clear_cache, complexity

__all__ = ["UNIT", "Complexity", "clear_cache", "complexity"]
