"""Teach the renderer from a real video.

Data half:
    ``train.video``       decode any video into square frames; random frame skip; clips
    ``train.extractors``  pluggable flow ("dis"), depth ("pydnet") and teacher ("deeplab") extractors
    ``train.cache``       extract once into a resumable memory-mapped cache with a manifest and statistics
    ``train.stats``       stream statistics (depth, flow, other), the same for a video and the game
    ``train.dataset``     ``CachedClips``: random training clips read from a cache
    ``train.extract``     the command line: ``python -m train.extract VIDEO --cache DIR --size 256``
"""
