"""`ajet view`: a local, read-only web viewer of runs, their curves, their episodes and the tokens trained."""

from __future__ import annotations

from ajet.viewer.app import create_app

__all__ = ["create_app"]
