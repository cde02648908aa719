"""`python -m analyzer` runs the command-line tool."""

from analyzer.cli import run

if __name__ == "__main__":
    run()
