"""The errors lettingo ends a command with, rooted here in the store (the lowest layer): each carries the exit code
the command line ends with. lettingo_cli/errors.py adds the errors the stages raise."""

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_MISSING_ARTIFACT = 3
EXIT_INTEGRITY = 4
EXIT_MISSING_DEPENDENCY = 5


class LettingoError(Exception):
    """A failure with a message meant for the user (exit 1)."""

    exit_code = EXIT_FAILURE


class ArtifactNotFound(LettingoError):
    """A reference that names no artifact, or more than one (exit 3)."""

    exit_code = EXIT_MISSING_ARTIFACT


class IntegrityError(LettingoError):
    """The store's content does not match its recorded hashes (exit 4)."""

    exit_code = EXIT_INTEGRITY
