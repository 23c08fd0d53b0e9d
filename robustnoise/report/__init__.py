"""Reports: the robustness.json schema, tables, figures, cross-run comparison and the sweep summary."""
