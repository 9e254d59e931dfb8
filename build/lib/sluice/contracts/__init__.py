"""Data contracts shared by workflows, activities and the CLI: pydantic models, no I/O."""
