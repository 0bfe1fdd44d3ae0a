"""Lanes: slices of the jobs table with slots of their own, the catalog of declared lanes and their figures."""

from backfill.lanes.lane import Lane

__all__ = ["Lane"]
