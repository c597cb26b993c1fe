"""Encore origin storage service: owns the bucket layout and the manifest format."""
