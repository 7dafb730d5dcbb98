"""Weight syncs: how the trainer's policy reaches the inference engine after each update (see `base`)."""

from ajet.trainer.weight_sync.base import WeightSync, WeightSyncError

__all__ = ["WeightSync", "WeightSyncError"]
