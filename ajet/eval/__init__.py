"""`ajet eval`: score a model or a run's checkpoint with pass@k on held-out tasks (docs/eval.md)."""
