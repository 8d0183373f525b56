"""InputError: bad user input (a config field, a file, a column). The CLI prints it as one line and
exits with status 2. Every package raises it for input a user can fix."""

import argparse


class InputError(ValueError):
    """A problem with user input; the message names the field or file and what was expected."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (exit status 2), as every other input error is,
    instead of the usage block (which `--help` still prints). Subcommand parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class Terminated(Exception):
    """The process was asked to stop (SIGTERM: a scheduler, `kill`, a node shutting down). The study's loop
    unwinds as for Ctrl-C; the CLI says one line and exits 143 (128 + SIGTERM)."""
