"""``python -m streamer``: the same command line as the ``streamer`` script."""

from streamer.cli import main

if __name__ == "__main__":
    main()
