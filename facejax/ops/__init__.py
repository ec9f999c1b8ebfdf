"""Array operations below the models: pixel reshuffles, the convolution formulations
(`facejax.ops.conv`) and a scan whose loop can be written out for counting (`loops`). Pure JAX
functions; nothing here knows a model, a task or a config."""
