"""reportflow worker service."""
