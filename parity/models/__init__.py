"""Model builders, one module per family; each is named by a model config's `builder._target_`."""
