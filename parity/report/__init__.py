"""Reports: the stdout table, the schema-validated report.json, and the multirun aggregate."""
