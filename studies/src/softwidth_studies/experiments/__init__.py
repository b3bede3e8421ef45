"""Case studies: one recipe per study, each runnable by one ``softwidth`` subcommand."""
