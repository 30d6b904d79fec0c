"""leadloop's infrastructure: settings, the database, the Temporal client factory, the codec, processes."""
