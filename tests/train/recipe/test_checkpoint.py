"""Training checkpoints: a damaged file is a one-line error; a saved one reads back."""

import pytest

from spokester_train.recipe.checkpoint import CHECKPOINT, TrainingStateError, load_state, save_state


def test_a_damaged_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / CHECKPOINT
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingStateError, match=str(path)) as error:
        load_state(path)
    assert "\n" not in str(error.value)
    save_state(path, {"step": 7, "config": {}})
    assert load_state(path)["step"] == 7
