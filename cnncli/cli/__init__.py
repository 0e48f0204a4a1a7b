"""The command line: thin Typer commands over importable functions."""


def main():
    from .app import run
    run()
