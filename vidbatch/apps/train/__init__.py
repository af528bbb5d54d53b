"""Training: frame CNNs (images or frames of labeled videos) and 3D CNNs over clips."""
