"""Specs that once failed, kept as regression cases.

Each entry is ``(spec, shapes, note)``; the forward pass must equal
``numpy.einsum`` and every gradient must equal the exact linear oracle.
Add an entry for every bug found, with the smallest shapes that showed it.
"""
from __future__ import annotations

FAILED_SPECS: list[tuple[str, tuple[tuple[int, ...], ...], str]] = [
    ("ii,i->i", ((1, 1), (3,)),
     "repeated index broadcast from size 1: numpy accepts it, binding refused it"),
    ("a,aa->", ((2,), (1, 1)),
     "the same bug, as hypothesis shrank it"),
    ("jjj,jjj->", ((1, 1, 1), (3, 3, 3)),
     "the same bug with a triple diagonal on both sides"),
]
