"""Setting an org up for syncd: `syncd check` and the Metadata API package of its fields."""
