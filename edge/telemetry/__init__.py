"""What the node reports about itself (Prometheus metrics and the access log), and what players
report to it (CMCD)."""
