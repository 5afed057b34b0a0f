"""Great Expectations: the suites from the catalog, results shaped for people, a stored snapshot
validated again, and GE's Data Docs site from the stored results."""
