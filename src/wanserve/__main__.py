"""`python -m wanserve` and `torchrun -m wanserve`: the same CLI as the `wanserve` command."""

from wanserve.cli import main

if __name__ == "__main__":
    main()
