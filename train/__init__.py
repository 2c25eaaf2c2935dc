"""Teach the renderer from a real video.

Data half:
    ``train.video``       decode any video into square frames; random frame skip; clips
    ``train.extractors``  pluggable flow ("dis"), depth ("pydnet") and teacher ("deeplab") extractors
    ``train.cache``       extract once into a resumable memory-mapped cache with a manifest and statistics
    ``train.stats``       stream statistics (depth, flow, other), the same for a video and the game
    ``train.dataset``     ``CachedClips``: random training clips read from a cache
    ``train.extract``     the command line: ``python -m train.extract VIDEO --cache DIR --size 256``

Training half:
    ``train.config``      ``TrainConfig`` (a docstring per field) and presets ``cpu-tiny``, ``gpu-base``
    ``train.loop``        ``train(config)``: the flat loop (diffusion forcing, condition augmentation,
                          iREPA, AdamW, EMA, atomic resumable checkpoints, JSONL log)
    ``train.batches``     caches, per-video statistics and a resumable clip order for training
    ``train.augment``     condition augmentation; ``train.irepa`` projector and cosine loss
    ``train.state``       atomic training checkpoints with every random state
    ``train.evaluate``    ``python -m train.evaluate --checkpoint PATH --video PATH --frames N --json``
    ``train.rollout``     game statistics, rollouts, contact sheets; ``python -m train.rollout --out PNG``
    ``train.semantic``    does DeepLab see a road scene where the game has one? ``python -m train.semantic --json``
    ``train.train``       the command line: ``python -m train.train --preset cpu-tiny --video PATH --out DIR``
"""
