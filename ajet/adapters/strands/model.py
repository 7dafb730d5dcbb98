"""The Strands model the tuner gives: Strands' own `OpenAIModel`, with two changes for training runs.

- A completion cut at `max_tokens` ends the turn (`stopReason: "end_turn"`) instead of making Strands raise
  `MaxTokensReachedException` and fail the episode: in RL, cut-off completions are ordinary samples (the other
  frameworks return the cut text as the answer, and the recorded call keeps `finish_reason: "length"`, so
  training knows it was cut). `on_max_tokens="raise"` keeps Strands' behaviour.
- OpenAI-style messages in `Agent(messages=...)` fail with a message naming `to_strands_messages`, instead of
  Strands' `TypeError: content_type=<...> | unsupported type`.

Imported only when a model is made (it imports Strands).
"""

from __future__ import annotations

from typing import Any, Literal

from strands.models.openai import OpenAIModel

from ajet.adapters.strands.messages import check_strands_messages

OnMaxTokens = Literal["end_turn", "raise"]


class TunerStrandsModel(OpenAIModel):
    def __init__(self, *, on_max_tokens: OnMaxTokens = "end_turn", **kwargs: Any) -> None:
        if on_max_tokens not in ("end_turn", "raise"):
            raise ValueError(f"on_max_tokens must be 'end_turn' or 'raise', not {on_max_tokens!r}")
        super().__init__(**kwargs)
        self.on_max_tokens = on_max_tokens

    def format_request(self, messages: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        check_strands_messages(messages)
        return super().format_request(messages, *args, **kwargs)

    def format_chunk(self, event: dict[str, Any], **kwargs: Any) -> Any:
        chunk = super().format_chunk(event, **kwargs)
        if (
            self.on_max_tokens == "end_turn"
            and chunk.get("messageStop", {}).get("stopReason") == "max_tokens"
        ):
            return {"messageStop": {"stopReason": "end_turn"}}
        return chunk
