"""Checkpoint converters of the mvit family (registered as the family lands)."""
