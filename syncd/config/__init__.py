"""Configuration: the TOML file read into validated settings (settings), every problem at
once by key path, in the config author's words (problems)."""
