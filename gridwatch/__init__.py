"""GridWatch: the shared contract, broker tooling, command line and demo."""
