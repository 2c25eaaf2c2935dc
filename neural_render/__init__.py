"""neural_render package."""
