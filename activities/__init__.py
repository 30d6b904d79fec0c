"""Activities: every side effect of leadloop (database, SMTP, rendering), grouped by area."""
