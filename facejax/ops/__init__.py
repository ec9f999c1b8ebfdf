"""Array operations below the models: pixel reshuffles and the convolution formulations
(`facejax.ops.conv`). Pure JAX functions; nothing here knows a model, a task or a config."""
