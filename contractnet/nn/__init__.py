"""Layers built from einsum specs (being written)."""
