"""Running: the step registry, stamps, the context, execution, dispatch."""
