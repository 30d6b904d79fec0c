"""The HTTP service's parts: shared state and dependencies, middleware, and one router per area."""
