"""Spec loading, the pure planner and the applier."""
