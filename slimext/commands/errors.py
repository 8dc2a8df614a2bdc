"""Input errors of the commands: `UserError` and the wrapper that turns it into one line.

Bad input raises `UserError` with the fix in its message; `run_command` turns it into one
`Error: ...` line and exit status 2 instead of a traceback.
"""
import functools
import sys


class UserError(Exception):
    """An input problem the user can fix; the message says how."""


def run_command(main):
    """Decorate a command's main(argv): slimext registered with ppdet first, and input
    errors ending in one line and exit code 2."""

    @functools.wraps(main)
    def wrapper(argv=None):
        import slimext
        from slimext.commands.console import filter_third_party_warnings, without_import_chatter

        filter_third_party_warnings()  # a tool's own process: see slimext.commands.console
        with without_import_chatter():
            slimext.register_with_ppdet()
        try:
            return main(argv)
        except UserError as error:
            print("Error: {}".format(error), file=sys.stderr)
            sys.exit(2)

    return wrapper
