"""``rat``: the command line of the Ratatoskr gateway."""
