"""Cell-by-cell analysis: nuclei, cells, membranes, and the breast biomarker rule tables."""
