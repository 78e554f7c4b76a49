"""Profiling, benchmarking, attention analysis and plots."""
from .attention import attention_map, attention_rollout, collect_attention, mean_attention_distance
from .profile import MacCounter, ProfileResult, count_macs, profile

__all__ = [
    "MacCounter", "ProfileResult", "count_macs", "profile",
    "attention_map", "attention_rollout", "collect_attention", "mean_attention_distance",
]
