"""Entry points people and systems start: the CLI, the mailbox and dev-server launchers."""
