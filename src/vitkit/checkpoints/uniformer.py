"""Checkpoint converters of the uniformer family (registered as the family lands)."""
