"""plyr appview: the wiring shared by ingest, projectors and the API."""
