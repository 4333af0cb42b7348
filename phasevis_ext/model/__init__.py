"""The model: loading, preparing (BatchNorm folding, memory plan) and its activations."""
