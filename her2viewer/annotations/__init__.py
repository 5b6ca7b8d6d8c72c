"""Annotations a pathologist draws: model, classes, measurements, undo, store, formats, ROIs."""
