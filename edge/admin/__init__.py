"""The admin listener (purge, warm, stats) and the control sockets between a node's workers."""
