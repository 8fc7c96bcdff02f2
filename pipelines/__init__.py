"""Thin command-line entry points: options, I/O and progress around `features` and `models`."""
