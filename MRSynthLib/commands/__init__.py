"""The command-line surfaces: ``mrsynth`` and its subcommands (synthesize, batch, evaluate, compare, demo) and the
output planner they share."""
