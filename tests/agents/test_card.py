"""The shipped PPO agent's model card is made from its sidecar."""

from __future__ import annotations

import json
from pathlib import Path

from spokester_agents.card import agent_card, card_path

SHIPPED = Path(__file__).resolve().parents[2] / "agents" / "models" / "ppo_depthflow64.zip"


def test_the_shipped_agents_card_is_its_sidecars():
    info = json.loads(SHIPPED.with_suffix(".json").read_text())
    card = card_path(SHIPPED).read_text()
    assert card == agent_card(SHIPPED)  # regenerated, not edited
    assert f"| trained | {info['timesteps']:,} decisions in {info['wall_s']} s" in card
    for row in info["evaluation"]["rows"]:
        assert f"| {row['agent']} | {row['mean_distance']} ± {row['std_distance']} |" in card
    assert card.count("| 25,000 | 181.2 |") == 1
