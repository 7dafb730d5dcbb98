"""How the command line shows an error: one red title and the message as plain text.

The message is never read as rich markup: error text quotes user input and exception messages, where
`[werewolf]` is a list, not a style (rich would print `e.g. [werewolf]` as `e.g. `).
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text


def fail(console: Console, title: str, error: BaseException | str, code: int = 2) -> NoReturn:
    """Print `title: message` (the message verbatim, unwrapped) and exit with `code`."""
    console.print(Text.assemble((f"{title}: ", "red"), str(error)), soft_wrap=True, highlight=False)
    raise typer.Exit(code)
