"""Encore edge node: serves audio over HTTP range requests from a sliced two-tier cache."""
