"""The training side: the seed's recipe as a config, a set-up, a loop and one optimiser step (see `train`'s
docstring for the modules)."""
