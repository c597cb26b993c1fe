"""Steps 6 and 7: objects as slices in memory and on disk, the single-flight fills that fetch
missing slices from the origin, and prefetch."""
