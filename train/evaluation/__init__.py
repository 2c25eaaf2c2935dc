"""The evaluation side: reconstruction of real clips, semantic agreement in the game, pictures (see
`train`'s docstring for the modules)."""
