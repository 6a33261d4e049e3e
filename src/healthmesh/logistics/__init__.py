"""Shipments from approved allocations to confirmed receipt."""
