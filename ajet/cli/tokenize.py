"""`ajet tokenize RUN_DIR_OR_STORE --out data.parquet`: recorded episodes as a token-level dataset."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def tokenize_command(
    source: Path = typer.Argument(
        ..., help="a run directory (runs/<name>), its ajet.sqlite, or the JSONL of `ajet debug --out`"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="where to write: a .parquet or a .jsonl file"),
    advantage_estimator: str | None = typer.Option(
        None, help="grpo, dr_grpo, rloo, reinforce_pp_baseline (default: the run's train.advantage_estimator)"
    ),
    run_id: str | None = typer.Option(None, help="only this run's episodes (a store may hold several runs)"),
    skip_zero_advantage: bool = typer.Option(
        False, help="leave out samples whose advantage is 0, as train.skip_zero_advantage does"
    ),
) -> None:
    """Write the samples the trainer builds from recorded episodes (input_ids, attention_mask, labels,
    action_mask, old_logprobs, advantage, reward, ids) for another trainer; print what was left out and why."""
    console = Console(highlight=False)
    # torch and the store load here, not when `ajet --help` runs
    from ajet.core.config import ConfigError
    from ajet.trainer.algorithms.registry import UnknownAlgorithmError
    from ajet.trainer.token_dataset import TokenDatasetError, build_token_dataset, write_token_dataset

    try:
        dataset = build_token_dataset(
            source,
            advantage_estimator=advantage_estimator,
            run_id=run_id,
            skip_zero_advantage=skip_zero_advantage,
        )
        console.print(dataset.summary(), markup=False, soft_wrap=True)
        if not dataset.rows:
            console.print(
                f"nothing written to {out}: no episode gave a sample (see above)",
                markup=False,
                soft_wrap=True,
            )
            raise typer.Exit(1)
        path = write_token_dataset(dataset.rows, out)
    except (TokenDatasetError, ConfigError, UnknownAlgorithmError) as exc:
        console.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(f"wrote {len(dataset.rows)} samples to {path}", markup=False, soft_wrap=True)
