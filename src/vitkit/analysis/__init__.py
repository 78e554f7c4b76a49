"""Profiling, benchmarking, attention analysis and plots."""
from .profile import MacCounter, ProfileResult, count_macs, profile

__all__ = ["MacCounter", "ProfileResult", "count_macs", "profile"]
