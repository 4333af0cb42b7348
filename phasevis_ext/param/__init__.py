"""Image parameterizations (MACO, Fourier, pixels) and the natural spectrum MACO holds fixed."""
