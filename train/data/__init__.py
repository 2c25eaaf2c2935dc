"""The data side of training: video decoding, pseudo-label extraction into label stores, condition
sources, clips and batches (see `train`'s docstring for the modules)."""
