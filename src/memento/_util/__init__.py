"""Leaf helpers every layer may use: readable text, durations and sizes (``text``),
argument checks (``checks``)."""
