"""Running a node: the app's wiring, one worker's event loop, and the supervisor of several."""
