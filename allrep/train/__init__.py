"""Model training: backbones, features, heads, the member engine, tuning, recipe, scratch, final models, inference."""
