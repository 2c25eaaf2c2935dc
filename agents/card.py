"""Model cards of PPO agents, made from the JSON sidecar `spokester train-agent` saves beside each model.

    python -m spokester_agents.card MODEL.zip [MODEL.zip ...]     # writes MODEL.card.md beside each

Every figure in a card is read from the sidecar (the training facts, the evaluations during training, and an
`evaluation` of seeded episodes when one was recorded), never typed in. `train-agent` writes the card of the
model it saves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from spokester_agents.envs import read_sidecar
from spokester_env.commandline import per_file_command
from spokester_env.output import atomic_write_text

__all__ = ["agent_card", "card_path", "main", "write_card"]


def card_path(model: str | os.PathLike) -> Path:
    """`MODEL.card.md` beside `MODEL.zip`."""
    model = Path(model)
    return model.with_name(model.name.removesuffix(".zip") + ".card.md")


def agent_card(model: str | os.PathLike) -> str:
    """The model card (Markdown) of a PPO model, from its sidecar."""
    model = Path(model)
    settings, info = read_sidecar(model)
    name = model.name
    view = settings.view
    decisions = f"one decision per {settings.action_repeat} game frames" if view == "packed" else "per framelet"
    hp = info.get("hyperparams") or {}
    lines = [
        f"# Model card: `{name}` (PPO agent)",
        "",
        f"A stable-baselines3 PPO policy (`{hp.get('policy', '?')}`) that rides Spokester (`{info.get('env_id')}`): "
        f"it sees the game's {view} view at {settings.size} px ({', '.join(settings.keys)}), {decisions}.",
        "",
        "| | |",
        "|---|---|",
        f"| trained | {info.get('timesteps', '?'):,} decisions in {info.get('wall_s', '?')} s, "
        f"{info.get('n_envs', '?')} envs, seed {info.get('seed', '?')}; stopped by {info.get('stopped_by', '?')} |",
        f"| kept | the {info.get('selected', 'last')} policy"
        + (f" (of step {info['selected_timesteps']:,})" if info.get("selected_timesteps") else "")
        + " |",
        f"| observation | {view} view, {settings.size} px, keys {', '.join(settings.keys)}"
        + (f", renderer `{settings.checkpoint}`" if settings.checkpoint else "")
        + " |",
        f"| files | `{name}` (SB3 zip), `{name.removesuffix('.zip')}.json` (this card's source) |",
        "",
        "## Intended use",
        "",
        "A baseline to compare RL methods on Spokester, and an agent to record rides with (`spokester record "
        f"--agent {name}`). It plays the game it was trained on; other observation settings need retraining.",
        "",
        "## How it was made",
        "",
        "```bash",
        info.get("command")
        or f"spokester train-agent --timesteps {info.get('timesteps', '?')} --n-envs {info.get('n_envs', '?')} "
        f"--seed {info.get('seed', '?')} --out {name}",
        "```",
        "",
        "Hyperparameters (rl-baselines3-zoo format): "
        + ", ".join(f"`{k}` {v}" for k, v in sorted(hp.items()) if k != "policy_kwargs"),
        "",
        "## Evaluation",
        "",
    ]
    evaluations = info.get("evaluations") or []
    if evaluations:
        lines += [
            "During training, mean distance of the most likely action over the selection episodes:",
            "",
            "| decisions | mean distance (m) |",
            "|---|---|",
            *(f"| {e['timesteps']:,} | {e['mean_distance']} |" for e in evaluations),
            "",
        ]
    evaluation = info.get("evaluation")
    if evaluation:
        lines += [
            f"Seeded episodes no selection saw (`{evaluation.get('command', 'spokester eval-agent')}`):",
            "",
            "| agent | distance (m) | length (frames) | crashed |",
            "|---|---|---|---|",
            *(
                f"| {row['agent']} | {row['mean_distance']} ± {row['std_distance']} | {row['mean_length']} ± "
                f"{row['std_length']} | {row['crashed']}/{row['episodes']} |"
                for row in evaluation.get("rows", [])
            ),
            "",
        ]
    if not evaluations and not evaluation:
        lines += ["Not evaluated: the sidecar records no evaluation.", ""]
    lines += [
        "## Limitations",
        "",
        "- It sees depth and flow (or the neural view) only at its own size and settings; the game must be the "
        "one it was trained on (camera, scene, speed curve).",
        "- Its most likely action and its sampled actions ride differently (see the evaluation); neither is "
        "the privileged heuristic's level.",
        *(f"- {text}" for text in info.get("limitations") or []),
        "",
        "## Licence",
        "",
        "MIT, as the code that trained it; it learnt from the game alone (no third-party data)"
        + (
            ", but with the neural view its observations come from a renderer whose own terms apply"
            if view == "neural"
            else ""
        )
        + ".",
        "",
        f"*Generated from `{name.removesuffix('.zip')}.json` by `python -m spokester_agents.card {name}`; "
        "do not edit.*",
        "",
    ]
    return "\n".join(lines)


def write_card(model: str | os.PathLike) -> Path:
    """Write `MODEL.card.md` beside the model (atomically); returns its path."""
    path = card_path(model)
    atomic_write_text(path, agent_card(model))
    return path


def main(argv: Sequence[str] | None = None) -> None:
    per_file_command(argv, prog="python -m spokester_agents.card", doc=__doc__, files="models",
                     help="PPO model zips (each with its .json sidecar)", work=write_card)  # fmt: skip


if __name__ == "__main__":
    main()
