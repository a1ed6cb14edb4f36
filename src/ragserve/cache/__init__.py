"""Caches: one small protocol, an in-process default, Redis for several replicas, and both tiered."""
