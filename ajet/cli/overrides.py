"""`--set section.key=value` on the command line: change any config field for one run without editing the file."""

from __future__ import annotations

from typing import Any

import yaml

from ajet.core.config import ConfigError, yaml_problem

SET_HELP = "override a config field, e.g. --set train.steps=2 --set rollout.group_size=4 (value read as YAML)"


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """`["train.steps=2", "trainable_targets=[villager, seer]"]` -> `{"train.steps": 2, ...}`."""
    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: write it as FIELD=VALUE, e.g. --set train.steps=2")
        try:
            overrides[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"--set {pair!r}: the value is not valid YAML ({yaml_problem(exc)}); quote it as text, e.g. "
                f"--set '{key}=\"...\"'"
            ) from None
    return overrides
