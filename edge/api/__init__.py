"""The public routes: what a ``/v1/tracks/...`` request does, from checks to body."""
