"""Code shared by every reportflow service: one obvious place for each cross-cutting concern."""
