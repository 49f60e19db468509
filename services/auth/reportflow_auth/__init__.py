"""reportflow auth service."""
