"""Teach the renderer from real video. Three jobs, one sub-package each:

`spokester_train.data` — from a video file to training batches:
    `video`        decode any video into square frames; clips with a random frame skip; `PATH@START:END`
    `extractors`   pluggable flow ("dis"), depth ("pydnet") and teacher ("deeplab") pseudo-label networks
    `extract`      write a video's label store once (resumable); `python -m spokester_train.data.extract VIDEO`
    `store`        `LabelStore`: read a label store (manifest, memory-mapped streams)
    `stream_stats` the summaries of a store's streams in its manifest
    `sky`          a video's sky at inverse depth 0, as in the game
    `game`         seeded game rides
    `sources`      the renderer's condition sources: each video's, the videos' pooled, the game's
    `clips`        `StoredClips`: random training clips of one store
    `batches`      `ClipBatches`: batches from several stores in a resumable order

`spokester_train.recipe` — the seed's training recipe:
    `config`         `TrainConfig` (a docstring per field) and the presets `cpu-tiny`, `gpu-base`
    `setup`          a run's set-up: run folder, networks, each curriculum stage's data, provenance
    `loop`           `train(config)`: the flat loop
    `optimizer_step` the loss of a batch and the update: shared by the loop and its benchmark
    `augment`, `irepa`  condition augmentation; the iREPA projector and loss
    `checkpoint`     atomic, resumable training checkpoints with every random state
    `run_log`        the run's JSONL log
    `bench`          time a training step; `python -m spokester_train.recipe.bench`

`spokester_train.evaluation` — how good is a renderer:
    `evaluate`        reconstruction of a real clip; `python -m spokester_train.evaluation.evaluate --video PATH --json`
    `semantic`        does DeepLab see the game's classes in the neural frames;
                      `python -m spokester_train.evaluation.semantic`
    `pictures`        cube view vs neural view of a ride; `python -m spokester_train.evaluation.pictures --out PNG`
    `during_training` the figures and pictures a run writes to `eval/` as it goes

`python -m spokester_train` trains a renderer (`spokester train-renderer`).
"""
