"""leadloop's domain: the pure rules and the models that cross Temporal (imports no other part of leadloop)."""
