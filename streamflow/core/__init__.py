"""The ground floor: the error family, calendar rules, the one catalog, Settings, who may write.
Imports nothing else of the library."""
