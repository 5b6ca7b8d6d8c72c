"""The reader-study GUI: the blinded reading window."""
