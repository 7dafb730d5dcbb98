"""Counting the calls of a native AgentScope model given as an untrained agent's `debug_model`.

`tuner.as_agentscope_model(target_tag=..., debug_model=OpenAIChatModel(...))` hands an untrained agent its own
model, which talks to its own endpoint: the gateway never sees those calls. So the agent gets a copy of the
model whose `__call__` reports each call (and whether it raised) before returning; the user's object is left
as it was. The copy is an instance of a subclass of the model's class (same name), so whatever AgentScope
checks or reads of its model is unchanged; its attributes are the original's (a shallow copy). A call is one
`await model(...)`: retries inside the model or its client are not seen, and neither are the tokens.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable
from typing import Any

OnCall = Callable[[BaseException | None], None]


def count_native_calls(model: Any, on_call: OnCall) -> Any:
    """A copy of `model` that reports each call to `on_call(error)`; `model` itself when it is not an
    AgentScope chat model (it is then used as given, uncounted)."""
    from agentscope.model import ChatModelBase

    if not isinstance(model, ChatModelBase) or not hasattr(model, "__dict__"):
        return model
    counted = object.__new__(_counted_class(type(model)))
    counted.__dict__.update(vars(model))
    counted.__dict__["_ajet_on_call"] = on_call
    return counted


@functools.cache
def _counted_class(cls: type) -> type:
    async def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        on_call: OnCall = self._ajet_on_call
        try:
            result = await cls.__call__(self, *args, **kwargs)
        except Exception as exc:  # not CancelledError: a cancelled call is neither an answer nor a failure
            on_call(exc)
            raise
        if inspect.isasyncgen(result):  # stream=True: the call ends with the stream
            return _counted_stream(result, on_call)
        on_call(None)
        return result

    namespace = {"__call__": __call__, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    namespace["__doc__"] = (
        f"{cls.__name__}, with its calls counted by ajet (an untrained agent's debug_model)."
    )
    return type(cls.__name__, (cls,), namespace)


async def _counted_stream(stream: AsyncGenerator[Any, None], on_call: OnCall) -> AsyncGenerator[Any, None]:
    reported = False
    try:
        async for chunk in stream:
            yield chunk
    except Exception as exc:
        reported = True
        on_call(exc)
        raise
    finally:
        if not reported:  # finished, or the agent stopped reading: a call that was answered
            on_call(None)
