"""InputError: bad user input (a config field, a file, a column). The CLI prints it as one line and
exits with status 2. Every package raises it for input a user can fix; fitting owns it because it is
the one package every other one may import."""


class InputError(ValueError):
    """A problem with user input; the message names the field or file and what was expected."""
