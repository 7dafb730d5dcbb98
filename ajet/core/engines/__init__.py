"""Inference engines: token-level (prompt ids in, completion ids + log-probs out) behind one async interface."""

from ajet.core.engines.base import InferenceEngine

__all__ = ["InferenceEngine"]
