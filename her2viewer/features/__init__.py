"""Features room of her2viewer (see DESIGN.md)."""
