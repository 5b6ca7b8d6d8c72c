"""Shapely geometry for every polygon: repair, measures in um, QuPath GeoJSON, spatial index."""
