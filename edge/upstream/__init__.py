"""Step 4 and the end of step 7: the bucket, reached through a guard (retries, deadline,
circuit breaker), and the manifests read from it."""
