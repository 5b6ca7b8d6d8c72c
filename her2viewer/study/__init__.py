"""Reader studies: SQLite store, blinded randomised reading, statistics and reports."""
