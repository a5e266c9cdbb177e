"""`python -m service`: an operator's command (`keys`, `enrollments`, `audit`, `db`), or the server."""

import sys

from service.cli import main

if __name__ == "__main__":
    sys.exit(main())
