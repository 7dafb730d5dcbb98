"""What a completion must match when a request asks for it: constrained (structured) decoding, engine-neutral.

The gateway turns `response_format` and `tool_choice: "required"` / a named function into a `Constraint`; an
engine that supports constrained decoding (`InferenceEngine.supports_constraints`) masks every sampling step so
that the completion matches it. The three kinds map one to one onto vLLM's `StructuredOutputsParams`
(`json=`, `json_object=True`, `structural_tag=`), so a remote vLLM engine can pass them on unchanged; the
structural tag is xgrammar's JSON format (https://xgrammar.mlc.ai/docs/tutorials/structural_tag.html), which
vLLM accepts as well.

A constraint is not part of `SamplingParams` on purpose: `SamplingParams` is what the trainer must reproduce
to recompute a log-prob, and the constraint is exactly what it does not reproduce (see
`ajet.core.engines.base` for the log-prob contract under a constraint).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ConstraintError(ValueError):
    """The constraint cannot be compiled (an unsupported or malformed JSON schema, ...); the gateway answers
    400. The message says what is wrong."""


class ConstraintsUnavailableError(RuntimeError):
    """The grammar library is not installed."""


class Constraint(BaseModel):
    """One completion's constraint.

    - `json_schema`: the completion is one JSON value valid for `spec` (a JSON schema).
    - `json_object`: the completion is one JSON object (`spec` is None).
    - `structural_tag`: the completion matches `spec`, an xgrammar structural tag (used for tool calls: the
      tool-call markup of the model's format around JSON arguments valid for each tool's schema).

    Whatever the kind, the completion ends with the end-of-sequence token once the constraint is complete.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["json_schema", "json_object", "structural_tag"]
    spec: dict[str, Any] | None = None

    @classmethod
    def json_schema(cls, schema: dict[str, Any]) -> Constraint:
        return cls(kind="json_schema", spec=schema)

    @classmethod
    def json_object(cls) -> Constraint:
        return cls(kind="json_object")

    @classmethod
    def structural_tag(cls, tag: dict[str, Any]) -> Constraint:
        return cls(kind="structural_tag", spec=tag)

    def key(self) -> str:
        """A stable text form (a cache key for compiled grammars)."""
        return json.dumps({"kind": self.kind, "spec": self.spec}, sort_keys=True, ensure_ascii=False)
