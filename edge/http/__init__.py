"""Step 1 and 8 of the data path: the public HTTP/1.1 listener, requests and responses,
ranges, preconditions, multipart bodies, and the JSON errors every refusal is."""
