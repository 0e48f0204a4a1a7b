"""One module per command: the importable function behind each `cnncli` command (the CLI in cli/
parses the options and calls it)."""
