"""Checkpoint converters of the swin family (registered as the family lands)."""
