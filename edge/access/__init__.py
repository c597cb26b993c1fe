"""Steps 2, 3 and 5: who may have what. Signed URLs, the client's region, and the licence
decision, all made before any cache is looked at."""
