"""facejax studio: a local web workbench (`facejax studio`) to clean a face set, draw mask
labels, watch a run train and tune the merge, served by Starlette behind a random token. The
only package of facejax that imports the web framework (docs/architecture.md)."""
