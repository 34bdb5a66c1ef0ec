"""Routes, one small module per resource."""
