"""Operator tools around the node: sign, simulate (and its traces), warm, the local demo."""
