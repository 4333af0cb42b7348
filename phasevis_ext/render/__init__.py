"""Rendering: objectives, crops, the settings of a run, the optimization loop and `visualize`."""
