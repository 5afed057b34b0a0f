"""The one Feast store: its objects from the catalog, apply, feature references, the registry's
objects, point-in-time frames, frames kept as saved datasets (`offline_of`: one class per backend),
materialization and online lookups."""
