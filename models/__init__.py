"""Models: metrics, cross-validated training, stacking and the safe model bundle."""
