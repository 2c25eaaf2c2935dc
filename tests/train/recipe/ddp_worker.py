"""What tests/train/recipe/test_distributed.py starts under torchrun: one process of a training run.

    torchrun --standalone --nproc_per_node N ddp_worker.py CONFIG.json [--resume] [--kill-at-step K]

CONFIG.json is a `TrainConfig.to_dict()`. `--kill-at-step K` sends SIGKILL to process 0 as it starts
optimiser step K (1-based), as a kill -9 of the whole run would hit it."""

import json
import os
import signal
import sys

from neural_render import FlowMatching
from spokester_env.commandline import user_errors
from spokester_train.recipe.config import config_from_dict
from spokester_train.recipe.distributed import Stopped
from spokester_train.recipe.loop import train


def main() -> None:
    config = config_from_dict(json.loads(open(sys.argv[1]).read()))
    if "--kill-at-step" in sys.argv and os.environ.get("RANK") == "0":
        kill_at = int(sys.argv[sys.argv.index("--kill-at-step") + 1])
        real, calls = FlowMatching.loss, [0]

        def loss(self, *args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, *args, **kwargs)

        FlowMatching.loss = loss
    with user_errors("worker"):  # as `python -m spokester_train` runs it
        try:
            train(config, resume="--resume" in sys.argv)
        except Stopped:
            raise SystemExit(1) from None


if __name__ == "__main__":
    main()
