"""``python -m sgdscope`` runs the command line."""

try:
    from ._entry import main
except KeyboardInterrupt:  # Ctrl-C in the first milliseconds: still one line, no traceback
    import sys

    print("interrupted during start-up: nothing was done", file=sys.stderr)
    raise SystemExit(130) from None

main()
