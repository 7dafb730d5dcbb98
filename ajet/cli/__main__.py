"""`python -m ajet.cli ...`: the `ajet` command (what `ajet train --nproc N` runs under torchrun)."""

from ajet.cli.main import main

main()
