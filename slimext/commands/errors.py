"""Input errors of the commands: `UserError` and the wrapper that turns it into one line.

Bad input raises `UserError` with the fix in its message; `run_command` turns it into one
`Error: ...` line and exit status 2 instead of a traceback.
"""
import functools
import sys
import warnings


class UserError(Exception):
    """An input problem the user can fix; the message says how."""


def run_command(main):
    """Decorate a command's main(argv): slimext registered with ppdet first, and input
    errors ending in one line and exit code 2."""

    @functools.wraps(main)
    def wrapper(argv=None):
        import slimext

        # A tool's own process: Paddle's and ppdet's deprecation chatter is not the user's.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        slimext.register_with_ppdet()
        try:
            return main(argv)
        except UserError as error:
            print("Error: {}".format(error), file=sys.stderr)
            sys.exit(2)

    return wrapper
