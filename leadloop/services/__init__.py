"""leadloop's services: what clients (CLI, HTTP) ask of Temporal and the database, in one place each."""
