"""Model training: backbones, features, heads, the member engine, tuning, recipe, scratch, final models, inference."""

# the profile sections the final models depend on (allrep.train.final); step 70 declares them (allrep.runner.registry)
FINAL_SECTIONS = ("seed", "backbones", "use_backbones", "weights_dir", "features", "head", "training", "tuning",
                  "ensemble", "splits", "uncertainty", "recipe_choice")
