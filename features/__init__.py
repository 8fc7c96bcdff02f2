"""Handcrafted forensic features: one module per family, a registry, and the extractor."""
